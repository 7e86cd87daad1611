"""How many workers ``up`` starts by default (issue 24 item 3): the rule, table by table."""

from __future__ import annotations

import pytest

from broker.errors import ConfigError
from sesame_voice.capacity import default_workers
from sesame_voice.up import UpConfig


@pytest.mark.parametrize(
    ("engine", "cores", "workers"),
    [
        ("piper", 1, 1),
        ("piper", 2, 2),
        ("piper", 8, 8),
        ("piper", 32, 16),
        ("espeak-ng", 4, 4),
        ("bark", 2, 1),
        ("bark", 32, 1),
    ],
)
def test_default_workers(engine: str, cores: int, workers: int) -> None:
    assert default_workers(engine, cores) == workers


@pytest.mark.parametrize(
    ("env", "flag", "workers"),
    [
        ({}, None, None),  # decided once the engine is known
        ({"SESAME_WORKERS": "auto"}, None, None),
        ({"SESAME_WORKERS": "3"}, None, 3),
        ({"SESAME_WORKERS": "3"}, 1, 1),
        ({}, 0, 0),
    ],
)
def test_the_setting_and_the_flag_win_over_the_default(
    env: dict[str, str], flag: int | None, workers: int | None
) -> None:
    assert UpConfig.from_env(env, None, flag).workers == workers


def test_a_bad_worker_count_is_refused() -> None:
    with pytest.raises(ConfigError):
        UpConfig.from_env({"SESAME_WORKERS": "many"}, None, None)
