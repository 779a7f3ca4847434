"""Output rules fed with synthetic kernel messages: the sequences a real kernel can't produce on demand."""

from __future__ import annotations

from typing import Any

from nbmcp.kernels.frontend import WIDGET_STATE_MIME, Frontend
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


def comm(msg_type: str, comm_id: str, state: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    data = {} if state is None else {"state": state, "buffer_paths": extra.pop("buffer_paths", [])}
    return {**msg(msg_type, comm_id=comm_id, data=data, **extra), "buffers": extra.get("buffers", [])}


def test_an_update_reaches_an_earlier_cell_through_the_shared_frontend() -> None:
    frontend = Frontend()
    first = OutputCollector(frontend, "cell-a")
    first.process(display("old", "d1"))
    second = OutputCollector(frontend, "cell-b")
    second.process(display("mine", "d1"))
    second.process(display("new", "d1", kind="update_display_data"))
    assert second.outputs[0].data["text/plain"] == "new"
    assert frontend.take_pending() == {"cell-a": {0: ({"text/plain": "new"}, {})}}
    # A cell run again no longer shows what it showed: its old positions get no update.
    OutputCollector(frontend, "cell-b").process(display("x", "d1", kind="update_display_data"))
    again = OutputCollector(frontend, "cell-a")
    again.process(display("y", "d1", kind="update_display_data"))
    assert frontend.take_pending() == {} and again.outputs == []


def test_widget_state_and_buffers_are_kept_as_nbclient_keeps_them() -> None:
    c = OutputCollector()
    model = {"_model_name": "IntSliderModel", "_model_module": "@jupyter-widgets/controls", "value": 1}
    c.process(comm("comm_open", "w1", model, target_name="jupyter.widget"))
    c.process(comm("comm_msg", "w1", {"value": 2, "data": None}, buffer_paths=[["data"]], buffers=[b"\x00\x01"]))
    c.process(comm("comm_msg", "w1", None))  # a custom message (widget.send): not state
    c.process(comm("comm_open", "other", {"x": 1}, target_name="jupyter.widget"))  # no _model_name: left out
    saved = c.frontend.widgets_metadata()
    assert saved is not None and list(saved) == [WIDGET_STATE_MIME]
    entry = saved[WIDGET_STATE_MIME]["state"]["w1"]
    assert entry["model_name"] == "IntSliderModel" and entry["state"]["value"] == 2
    assert entry["buffers"] == [{"data": "AAE=", "encoding": "base64", "path": ["data"]}]
    assert list(saved[WIDGET_STATE_MIME]["state"]) == ["w1"]
    assert Frontend().widgets_metadata() is None


def test_output_widget_takes_the_output_and_its_clear_output() -> None:
    c = OutputCollector()
    sent: list[dict[str, Any]] = []
    c.send_comm = lambda content, parent: sent.append(content)
    output_model = {"_model_name": "OutputModel", "_model_module": "@jupyter-widgets/output", "outputs": []}
    c.process(comm("comm_open", "out", output_model, target_name="jupyter.widget"))
    inside = {"msg_id": "run-1"}

    def routed(m: dict[str, Any]) -> dict[str, Any]:
        return {**m, "parent_header": inside}

    c.process(stream("cell line\n"))
    c.process(comm("comm_msg", "out", {"msg_id": "run-1"}))
    c.process(routed(stream("hello\n")))
    c.process(routed(msg("clear_output", wait=True)))
    c.process(routed(stream("world\n")))
    c.process(comm("comm_msg", "out", {"msg_id": ""}))
    c.process(routed(stream("after\n")))
    assert [o.text for o in c.outputs] == ["cell line\nafter\n"]
    state = c.frontend.widget_state["out"]
    assert [o["text"] for o in state["outputs"]] == ["world\n"]
    assert sent[-1]["data"]["state"]["outputs"] == state["outputs"]  # the kernel's widget is told
