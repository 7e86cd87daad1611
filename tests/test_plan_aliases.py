"""Environment settings: the plan's names (MODEL_NAME, USE_GPU, CACHE_DIR, MAX_WORKERS,
PRELOAD_MODELS) read as aliases of ours, ours winning, errors naming what was set."""

from __future__ import annotations

import pytest

from broker.errors import ConfigError
from broker.settings import PLAN_ALIASES, Env
from sesame_voice.up import UpConfig
from synth_worker.config import WorkerConfig

PLAN_COMPOSE = {  # the plan's docker-compose.prod.yml, as written
    "MODEL_NAME": "suno/bark",
    "PRELOAD_MODELS": "true",
    "USE_GPU": "false",
    "CACHE_DIR": "/models",
    "MAX_WORKERS": "4",
    "LOG_LEVEL": "INFO",
}


def test_the_plans_compose_reads_as_our_settings() -> None:
    worker = WorkerConfig.from_env(PLAN_COMPOSE)
    assert (worker.model, worker.model_cache, worker.device, worker.preload_models) == (
        "suno/bark",
        "/models",
        "cpu",
        True,
    )
    assert UpConfig.from_env(PLAN_COMPOSE, port=None, workers=None).workers == 4


@pytest.mark.parametrize(
    ("value", "device"), [("true", "cuda"), ("1", "cuda"), ("false", "cpu"), ("no", "cpu")]
)
def test_use_gpu_is_a_device(value: str, device: str) -> None:
    assert Env({"USE_GPU": value}).raw("SESAME_DEVICE") == device
    assert WorkerConfig.from_env({"USE_GPU": value}).device == device


def test_our_name_wins_over_the_plans() -> None:
    env = {"SESAME_MODEL": "/ckpt", "MODEL_NAME": "suno/bark", "SESAME_DEVICE": "cuda:1", "USE_GPU": "false"}
    assert WorkerConfig.from_env(env).model == "/ckpt"
    assert WorkerConfig.from_env(env).device == "cuda:1"
    up = UpConfig.from_env({"SESAME_WORKERS": "2", "MAX_WORKERS": "4"}, port=None, workers=None)
    assert up.workers == 2


def test_an_empty_value_is_unset() -> None:
    assert Env({"SESAME_MODEL": " ", "MODEL_NAME": "suno/bark"}).raw("SESAME_MODEL") == "suno/bark"
    assert Env({"MODEL_NAME": ""}).raw("SESAME_MODEL") is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"USE_GPU": "maybe"}, "USE_GPU='maybe' is not a boolean"),
        ({"MAX_WORKERS": "four"}, "MAX_WORKERS (as SESAME_WORKERS)='four' is not an integer"),
        ({"MAX_WORKERS": "100"}, "MAX_WORKERS (as SESAME_WORKERS)=100 is above 64"),
        ({"PRELOAD_MODELS": "often"}, "PRELOAD_MODELS (as SESAME_PRELOAD_MODELS)='often' is not a boolean"),
    ],
)
def test_a_bad_plan_value_names_the_variable_set(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerConfig.from_env(env)
        UpConfig.from_env(env, port=None, workers=None)
    assert message in str(info.value)


def test_every_alias_stands_for_a_setting_of_ours() -> None:
    names = {a.name for a in PLAN_ALIASES}
    assert names == {"MODEL_NAME", "CACHE_DIR", "USE_GPU", "PRELOAD_MODELS", "MAX_WORKERS"}
    assert all(a.of.startswith("SESAME_") for a in PLAN_ALIASES)
