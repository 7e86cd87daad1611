"""Benchmark helpers: the local stack (tests/support/localstack.py, shared with the tests) and the
machine's description for result tables."""

from __future__ import annotations

import os
import subprocess

from tests.support.localstack import REPO, Proc, Stack

__all__ = ["REPO", "Proc", "Stack", "machine"]


def machine() -> str:
    """The CPU model name and core count, as ``lscpu`` reports it (for result tables)."""
    model = "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=5).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{model}, {os.cpu_count()} CPUs"
