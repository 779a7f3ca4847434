"""Where the notebook lives: a local `.ipynb` file (`store`), or a Jupyter server's Contents API (`contents`).

The local store's parts can be read alone: the bytes it writes (`encoder`) and reads (`reader`), what
it last saw of the file (`fingerprint`), its lock between processes (`lock`), the atomic save (`atomic`)
and the allocator tuning for large files (`memory`). Also here: the file's encoding as slices
(`chunks`), the undo journal (`journal`) and the watcher that notices other programs' changes
(`watcher`). Nothing in this folder knows of kernels.
"""
