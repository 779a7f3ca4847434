"""Where the notebook lives: a local `.ipynb` file (`store`), or a Jupyter server's Contents API (`contents`).

Also here: the file's encoding (`chunks`), the undo journal (`journal`) and the watcher that notices
other programs' changes (`watcher`). Nothing in this folder knows of kernels.
"""
