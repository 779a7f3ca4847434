"""Output rules fed with synthetic kernel messages: the sequences a real kernel can't produce on demand."""

from __future__ import annotations

from typing import Any

from nbmcp.kernels.outputs import OutputCollector, normalize_stream_text


def msg(msg_type: str, **content: Any) -> dict[str, Any]:
    return {"msg_type": msg_type, "header": {"msg_type": msg_type}, "parent_header": {}, "content": content}


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return msg("stream", name=name, text=text)


def display(text: str, display_id: str | None = None, kind: str = "display_data") -> dict[str, Any]:
    transient = {"display_id": display_id} if display_id else {}
    return msg(kind, data={"text/plain": text}, metadata={}, transient=transient)


def test_consecutive_streams_of_one_name_merge() -> None:
    c = OutputCollector()
    for m in (stream("a\n"), stream("b\n"), stream("err\n", "stderr"), stream("c\n")):
        c.process(m)
    outs = c.finish()
    assert [(o.name, o.text) for o in outs] == [("stdout", "a\nb\n"), ("stderr", "err\n"), ("stdout", "c\n")]


def test_carriage_returns_and_backspaces_resolve_like_a_terminal() -> None:
    assert normalize_stream_text("10%\r50%\r100%\n") == "100%\n"
    assert normalize_stream_text("abc\x08\x08d\n") == "ad\n"
    # Word boundaries are not backspaces (nbclient's raw-string regex gets this wrong).
    assert normalize_stream_text("hello world\n") == "hello world\n"


def test_clear_output_without_wait_clears_at_once() -> None:
    c = OutputCollector()
    c.process(stream("old\n"))
    c.process(msg("clear_output", wait=False))
    assert c.outputs == []


def test_clear_output_wait_clears_just_before_the_next_output() -> None:
    c = OutputCollector()
    c.process(stream("old\n"))
    c.process(msg("clear_output", wait=True))
    assert [o.text for o in c.outputs] == ["old\n"]
    c.process(stream("new\n"))
    assert [o.text for o in c.finish()] == ["new\n"]


def test_update_display_data_replaces_the_output_with_that_display_id() -> None:
    c = OutputCollector()
    c.process(display("first", "d1"))
    c.process(stream("between\n"))
    c.process(display("other", "d2"))
    c.process(display("second", "d1", kind="update_display_data"))
    outs = c.finish()
    assert [o.output_type for o in outs] == ["display_data", "stream", "display_data"]
    assert outs[0].data["text/plain"] == "second"
    assert outs[2].data["text/plain"] == "other"


def test_update_for_an_unknown_display_id_is_ignored() -> None:
    c = OutputCollector()
    c.process(display("x", "unknown", kind="update_display_data"))
    assert c.outputs == []


def test_clear_forgets_display_positions() -> None:
    c = OutputCollector()
    c.process(display("first", "d1"))
    c.process(msg("clear_output", wait=False))
    c.process(stream("s\n"))
    c.process(display("late", "d1", kind="update_display_data"))
    assert [o.output_type for o in c.outputs] == ["stream"]


def test_execution_count_and_idle_are_recorded() -> None:
    c = OutputCollector()
    c.process(msg("execute_input", code="1", execution_count=7))
    c.process(msg("execute_result", data={"text/plain": "1"}, metadata={}, execution_count=7))
    c.process(msg("status", execution_state="idle"))
    assert c.execution_count == 7 and c.idle
    assert c.outputs[0].execution_count == 7


def test_error_output_and_last_line() -> None:
    c = OutputCollector()
    c.process(stream("working\nalmost\n"))
    assert c.last_line == "almost"
    c.process(msg("error", ename="ValueError", evalue="bad", traceback=["tb"]))
    assert c.outputs[-1].output_type == "error"
    assert c.last_line == "ValueError: bad"


def test_carriage_returns_resolve_like_nbclients_rule_even_on_a_very_long_line() -> None:
    import re

    nbclient_rule = re.compile(r".*\r(?=[^\n])")  # nbclient's coalesce_streams regex
    for text in ["a\rb\n", "10%\r50%\r100%\n", "x\r\n", "\r\n\r", "a\r\rb", "keep\r", "one\rtwo\nthree\rfour\r\n"]:
        assert normalize_stream_text(text) == nbclient_rule.sub("", text), repr(text)
    # The regex would take hours on this line; a slow implementation fails by the per-test timeout.
    long_line = "x" * 2_000_000 + "\r\n"
    assert normalize_stream_text(long_line) == long_line
