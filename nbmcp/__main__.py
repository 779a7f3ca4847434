"""`python -m nbmcp`."""

from .cli import main

main()
