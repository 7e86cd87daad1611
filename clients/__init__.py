"""Clients: the browser client (web/), the CLI, the load tester and the replay harness."""
