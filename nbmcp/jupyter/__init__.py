"""The client of a remote Jupyter server: its address, token and REST calls, and how its errors read."""
