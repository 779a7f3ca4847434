"""Where the notebook's code runs: a local kernel (`local`) or a Jupyter server's (`remote`).

`choice` decides which kernel runs the code, and why; `base` holds what every kernel shares (its
states, `ExecutionResult`, and the one execute path: timeout, interrupt, death, progress); `local`
and `remote` supply only how code reaches their kernel and how its messages come back (`channels`
is the websocket to a kernel on a Jupyter server). Both build a cell's outputs from the kernel's
messages in one way (`outputs`). Nothing in this folder knows of notebook files.
"""
