"""WorkerConfig from env + flags: defaults, parsing, errors that name the variable."""

from __future__ import annotations

import pytest

from broker.errors import EXIT_CONFIG, ConfigError
from broker.settings import MqttUrl
from broker.topics import check_id
from synth_worker.config import WorkerConfig
from synth_worker.main import _overrides, _parser, main


def test_defaults_follow_the_plan() -> None:
    c = WorkerConfig.from_env({})
    check_id(c.worker_id)
    assert c.mqtt_url.urls == (MqttUrl("127.0.0.1", 1883),)
    assert (c.engine, c.model, c.temperature, c.max_length) == ("bark", "suno/bark-small", 0.7, 200)
    assert c.preload_models and c.warmup_on_start
    assert c.heartbeat_interval_s == 0.5
    assert c.speaker_id is None and c.device == "auto"


def test_generated_worker_ids_differ() -> None:
    assert WorkerConfig.from_env({}).worker_id != WorkerConfig.from_env({}).worker_id


def test_env_values_are_parsed() -> None:
    c = WorkerConfig.from_env(
        {
            "SESAME_WORKER_ID": "gpu-1",
            "SESAME_MQTT_URL": "mqtt://broker:1884",
            "SESAME_ENGINE": "espeak-ng",
            "SESAME_SPEAKER_ID": "15",
            "SESAME_TEMPERATURE": "0.5",
            "SESAME_MAX_LENGTH": "300",
            "SESAME_PRELOAD_MODELS": "false",
            "SESAME_WARMUP_ON_START": "no",
            "SESAME_HEARTBEAT_INTERVAL_MS": "250",
            "SESAME_MAX_QUEUE": "3",
            "SESAME_SEMANTIC_MAX_TOKENS": "100",
            "SESAME_DEVICE": "CPU",
        }
    )
    assert c.worker_id == "gpu-1" and c.engine == "espeak-ng"
    assert c.mqtt_url.urls == (MqttUrl("broker", 1884),)
    assert (c.speaker_id, c.temperature, c.max_length, c.max_queue, c.semantic_max_tokens) == (
        15,
        0.5,
        300,
        3,
        100,
    )
    assert not c.preload_models and not c.warmup_on_start
    assert c.heartbeat_interval_s == 0.25 and c.device == "cpu"
    assert WorkerConfig.from_env({"SESAME_SPEAKER_ID": "v2/en_speaker_6"}).speaker_id == "v2/en_speaker_6"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SESAME_WORKER_ID": "a/b"}, "SESAME_WORKER_ID"),
        ({"SESAME_WORKER_ID": "a+"}, "SESAME_WORKER_ID"),
        ({"SESAME_WORKER_ID": "#"}, "SESAME_WORKER_ID"),
        ({"SESAME_ENGINE": "csm"}, "SESAME_ENGINE"),
        ({"SESAME_MQTT_URL": "http://x:1"}, "SESAME_MQTT_URL"),
        ({"SESAME_TEMPERATURE": "hot"}, "SESAME_TEMPERATURE"),
        ({"SESAME_MAX_QUEUE": "-1"}, "SESAME_MAX_QUEUE"),
        ({"SESAME_SEMANTIC_MAX_TOKENS": "5000"}, "SESAME_SEMANTIC_MAX_TOKENS"),
        ({"SESAME_PRELOAD_MODELS": "maybe"}, "SESAME_PRELOAD_MODELS"),
        ({"SESAME_HEARTBEAT_INTERVAL_MS": "1"}, "SESAME_HEARTBEAT_INTERVAL_MS"),
    ],
)
def test_bad_values_raise_config_error_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        WorkerConfig.from_env(env)


def test_flags_override_env() -> None:
    args = _parser().parse_args(
        ["--engine", "espeak-ng", "--heartbeat-interval-ms", "100", "--no-warmup", "--mqtt-url", "mqtt://h:2"]
    )
    c = WorkerConfig.from_env(
        {"SESAME_ENGINE": "bark", "SESAME_HEARTBEAT_INTERVAL_MS": "900"}, **_overrides(args)
    )
    assert c.engine == "espeak-ng" and c.heartbeat_interval_s == 0.1 and not c.warmup_on_start
    assert c.mqtt_url.urls == (MqttUrl("h", 2),) and c.preload_models  # unset flags leave env/defaults


def test_worker_main_exits_ex_config_on_bad_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESAME_WORKER_ID", "bad/id")
    assert main([]) == EXIT_CONFIG == 78  # a supervisor does not restart it (sesame_voice/supervisor.py)


def test_every_worker_default_is_the_dataclass_field_s() -> None:
    """``from_env`` reads its defaults from the fields (written once): an environment that sets
    nothing gives the dataclass's own defaults, but for the generated worker id."""
    built = WorkerConfig.from_env({})
    assert built == WorkerConfig(worker_id=built.worker_id, mqtt_url=built.mqtt_url)
