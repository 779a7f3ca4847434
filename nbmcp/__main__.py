"""`python -m nbmcp`."""

from .cli.main import main

main()
