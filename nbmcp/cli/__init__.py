"""The `nbmcp` command: serve a notebook (`main`), and the subcommands exec, doctor, history and undo."""
