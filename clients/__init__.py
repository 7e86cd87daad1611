"""Clients: the browser client (web/), a Python client library, the CLI, the load tester, the replay harness."""
