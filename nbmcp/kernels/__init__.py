"""Where the notebook's code runs: a local kernel (`local`) or a Jupyter server's (`remote`).

Both build a cell's outputs from the kernel's messages in one way (`outputs`). Nothing in this folder
knows of notebook files.
"""
