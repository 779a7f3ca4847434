"""Headless runs for CI: papermill-style parameters, many notebooks at once, JUnit reports, and `Notebook`,
the blocking Python API for scripts."""
