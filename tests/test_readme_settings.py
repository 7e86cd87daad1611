"""The README's settings table and the settings the code reads, checked against each other.

Every environment variable the product reads (a ``SESAME_*``, ``ELEVENLABS_*`` or ``LOG_LEVEL``
string in its source, and the plan's names read as aliases, ``broker.settings.PLAN_ALIASES``) has a
row, every row names a variable the code reads, and the unit column is true: a duration read as
milliseconds (``Env.ms``) says ``ms``, and nothing else does. An alias's row names the setting it
stands for.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from broker.settings import PLAN_ALIASES

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("broker", "stream_server", "synth_worker", "sesame_voice", "clients")
NAME = re.compile(r"(SESAME|ELEVENLABS)_[A-Z0-9_]+|LOG_LEVEL")
VARIABLE = re.compile(r"`([A-Z0-9_]+)`")


def code_settings() -> tuple[set[str], set[str]]:
    """(every variable named in product code, those read as milliseconds)."""
    names: set[str] = set()
    ms: set[str] = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and NAME.fullmatch(node.value)
                ):
                    names.add(node.value)
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "ms"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    ms.add(str(node.args[0].value))
    return names | {alias.name for alias in PLAN_ALIASES}, ms


def readme_rows() -> dict[str, str]:
    """variable -> unit, from the table under "## Settings"."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and (m := VARIABLE.fullmatch(cells[0])):
            assert m.group(1) not in rows, f"{m.group(1)} has two rows"
            rows[m.group(1)] = cells[3]
    return rows


def test_the_table_was_found() -> None:
    assert len(readme_rows()) > 20


def test_every_setting_the_code_reads_is_in_the_readme() -> None:
    names, _ = code_settings()
    assert sorted(names - set(readme_rows())) == []


def test_every_readme_setting_is_read_by_the_code() -> None:
    names, _ = code_settings()
    assert sorted(set(readme_rows()) - names) == []


def test_the_unit_column_says_ms_exactly_for_millisecond_settings() -> None:
    _, ms = code_settings()
    rows = readme_rows()
    assert sorted(v for v in ms if rows.get(v) != "ms") == []
    assert sorted(v for v, unit in rows.items() if unit == "ms" and v not in ms) == []
    assert rows["SESAME_CACHE_TTL"] == "s"


def test_each_plan_alias_row_names_the_setting_it_stands_for() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8").split("## Settings", 1)[1]
    for alias in PLAN_ALIASES:
        row = next(line for line in text.splitlines() if line.startswith(f"| `{alias.name}` |"))
        assert f"`{alias.of}`" in row, alias
