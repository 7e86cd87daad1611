"""The worker's settings, read once at the entry point from the environment (flags override).

| variable                       | default                 | meaning                                         |
| ------------------------------ | ----------------------- | ----------------------------------------------- |
| SESAME_WORKER_ID               | its MQTT user, or random | topic level naming this worker (its MQTT user) |
| SESAME_MQTT_URL                | mqtt://127.0.0.1:1883   | the broker (cluster: nodes, comma-separated)    |
| SESAME_ENGINE                  | bark                    | bark, piper or espeak-ng                        |
| SESAME_PIPER_VOICE             | (packaged Joe voice)    | a Piper .onnx model (its .onnx.json beside it)  |
| SESAME_PIPER_THREADS           | auto (piper_threads.py) | onnxruntime threads per Piper child process     |
| SESAME_WORKERS                 | auto (per core, <= 16)  | Piper workers on this machine (``up`` sets it)  |
| SESAME_ENGINE_NICE             | 19                      | espeak-ng's, Piper's child: 0-19 (0: as worker) |
| SESAME_MODEL                   | suno/bark-small         | Bark checkpoint directory or cached hub id      |
| SESAME_MODEL_CACHE             | (HF default cache)      | where cached hub ids are looked up              |
| SESAME_SPEAKER_ID              | (voice map)             | default voice's Bark speaker: N or preset name  |
| SESAME_TEMPERATURE             | 0.7                     | Bark sampling temperature                       |
| SESAME_MAX_LENGTH              | 200                     | characters per job; longer -> text_too_long     |
| SESAME_PRELOAD_MODELS          | true                    | load the model at start (else on first job)     |
| SESAME_WARMUP_ON_START         | true                    | one warm-up inference before ``ready``          |
| SESAME_HEARTBEAT_INTERVAL_MS   | 500                     | heartbeat period                                |
| SESAME_MAX_QUEUE               | 256                     | queued jobs held (memory); overload: deadlines  |
| SESAME_MAX_BATCH               | 1                       | Bark jobs generated together (same speaker)     |
| SESAME_SEMANTIC_MAX_TOKENS     | 767                     | upper bound of Bark's semantic tokens per job   |
| SESAME_DEVICE                  | auto                    | auto, cpu, cuda, cuda:N                         |
| SESAME_TORCH_THREADS           | 0 (cores - 1)           | torch CPU threads for inference                 |
| SESAME_DRAIN_TIMEOUT_MS        | 30000                   | how long SIGTERM waits for running jobs         |
| SESAME_VOICES                  | (built-in map)          | JSON voice map file                             |
| SESAME_SEED                    | (unset: random)         | fixed Bark sampling seed (reproducible audio)   |
| SESAME_MODEL_RETRY_MS          | 10000                   | retry an unavailable model this often (0: never)|
| SESAME_STUCK_FACTOR            | 10                      | job stuck after factor x RTF x expected audio   |
| SESAME_STUCK_FLOOR_MS          | 60000                   | ... never before this; stuck -> exit status 70  |
| SESAME_HEALTH_FILE             | (unset)                 | liveness file for ``worker --check-health``     |
| SESAME_BARK_DECODER            | static                  | static (own loop) or generate (transformers')   |
| SESAME_BARK_STEP               | auto                    | static step: auto, eager, cuda-graph, compile   |
| LOG_LEVEL                      | info                    | log level                                       |
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from broker.credentials import is_role
from broker.errors import ConfigError, ProtocolError
from broker.settings import Env, MqttNodes
from broker.topics import check_id
from synth_worker.bark.decode import STEP_MODES, StepMode
from synth_worker.bark.settings import DECODERS, DEFAULT_MODEL, MAX_SEMANTIC_TOKENS, BarkSettings, DecoderName
from synth_worker.child_priority import DEFAULT_NICE
from synth_worker.engines import EngineSettings
from synth_worker.piper_threads import PiperThreads, machine_cores, one_core_workers, piper_threads

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"
EngineName = Literal["bark", "piper", "espeak-ng"]
ENGINES: tuple[EngineName, ...] = ("bark", "piper", "espeak-ng")


def piper_threads_setting(e: Env) -> PiperThreads:
    """SESAME_PIPER_THREADS: N fixes the threads; ``auto`` (default): ``piper_threads`` of this
    machine's cores and SESAME_WORKERS (the Piper workers on it; unset or auto: up's default)."""
    raw = (e.raw("SESAME_PIPER_THREADS") or "auto").strip().lower()
    if raw != "auto":
        return PiperThreads.fixed(e.int("SESAME_PIPER_THREADS", 1, lo=0, hi=64))
    cores = machine_cores()
    workers = (e.raw("SESAME_WORKERS") or "auto").strip().lower()
    count = one_core_workers(cores) if workers == "auto" else e.int("SESAME_WORKERS", 1, lo=0, hi=64)
    return piper_threads(cores, count)


def default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())[:40] or "host"
    return f"worker-{host}-{secrets.token_hex(3)}"


def parse_speaker(raw: str | None) -> int | str | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    worker_id: str
    mqtt_url: MqttNodes
    engine: EngineName = "bark"
    model: str = DEFAULT_MODEL
    model_cache: str | None = None
    speaker_id: int | str | None = None
    temperature: float = 0.7
    max_length: int = 200
    preload_models: bool = True
    warmup_on_start: bool = True
    heartbeat_interval_s: float = 0.5
    max_queue: int = 256
    max_late_s: float = 3.0  # a job whose first audio would be later than that is refused
    max_batch: int = 1
    semantic_max_tokens: int = MAX_SEMANTIC_TOKENS
    device: str = "auto"
    torch_threads: int = 0
    drain_timeout_s: float = 30.0
    voices_path: str | None = None
    log_level: str = "info"
    chunk_ms: int = 40
    seed: int | None = None
    model_retry_s: float = 10.0
    stuck_factor: float = 10.0
    stuck_floor_s: float = 60.0
    health_file: str | None = None
    piper_voice: str | None = None
    piper_threads: PiperThreads = field(default_factory=lambda: piper_threads_setting(Env({})))
    engine_nice: int = DEFAULT_NICE  # synth_worker/child_priority.py
    bark_decoder: DecoderName = "static"
    bark_step: StepMode = "auto"

    def __post_init__(self) -> None:
        try:
            check_id(self.worker_id, "worker_id")
        except ProtocolError as exc:
            raise ConfigError(f"SESAME_WORKER_ID={self.worker_id!r}: {exc}") from exc
        if is_role(self.worker_id):
            raise ConfigError(f"SESAME_WORKER_ID={self.worker_id!r} is a broker role, not a worker")
        user = self.mqtt_url.first.username
        if user is not None and user != self.worker_id:
            # The broker's ACL lets a worker publish only under its own user name (docs/security.md).
            raise ConfigError(
                f"SESAME_WORKER_ID={self.worker_id!r} differs from the MQTT user {user!r} of SESAME_MQTT_URL"
            )
        if self.engine not in ENGINES:
            raise ConfigError(f"SESAME_ENGINE={self.engine!r} is not one of {', '.join(ENGINES)}")
        if self.bark_decoder not in DECODERS:
            raise ConfigError(
                f"SESAME_BARK_DECODER={self.bark_decoder!r} is not one of {', '.join(DECODERS)}"
            )
        if self.bark_step not in STEP_MODES:
            raise ConfigError(f"SESAME_BARK_STEP={self.bark_step!r} is not one of {', '.join(STEP_MODES)}")

    def engine_settings(self) -> EngineSettings:
        """What ``synth_worker.engines`` builds this worker's engine from."""
        bark = BarkSettings(
            model=self.model,
            cache_dir=self.model_cache,
            device=self.device,
            temperature=self.temperature,
            semantic_max_tokens=self.semantic_max_tokens,
            torch_threads=self.torch_threads,
            chunk_ms=self.chunk_ms,
            max_batch=self.max_batch,
            seed=self.seed,
            decoder=self.bark_decoder,
            step_mode=self.bark_step,
        )
        return EngineSettings(
            chunk_ms=self.chunk_ms,
            piper_voice=self.piper_voice,
            piper_threads=self.piper_threads,
            child_nice=self.engine_nice,
            bark=bark,
            bark_speaker=self.speaker_id,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerConfig:
        """Build from the environment; ``overrides`` (from flags) win where not None."""
        e = Env(os.environ if env is None else env)
        d = cls(worker_id="defaults", mqtt_url=MqttNodes.parse(DEFAULT_MQTT_URL))  # each default, once
        engine = e.str("SESAME_ENGINE", d.engine).lower()
        if engine not in ENGINES:
            raise ConfigError(f"SESAME_ENGINE={engine!r} is not one of {', '.join(ENGINES)}")
        nodes = MqttNodes.parse(e.str("SESAME_MQTT_URL", DEFAULT_MQTT_URL))
        config = cls(
            worker_id=e.str("SESAME_WORKER_ID", "") or nodes.first.username or default_worker_id(),
            mqtt_url=nodes,
            engine=engine,
            model=e.str("SESAME_MODEL", d.model),
            model_cache=e.raw("SESAME_MODEL_CACHE"),
            speaker_id=parse_speaker(e.raw("SESAME_SPEAKER_ID")),
            temperature=e.float("SESAME_TEMPERATURE", d.temperature, lo=0.0, hi=5.0),
            max_length=e.int("SESAME_MAX_LENGTH", d.max_length, lo=1, hi=4000),
            preload_models=e.bool("SESAME_PRELOAD_MODELS", d.preload_models),
            warmup_on_start=e.bool("SESAME_WARMUP_ON_START", d.warmup_on_start),
            heartbeat_interval_s=e.ms("SESAME_HEARTBEAT_INTERVAL_MS", d.heartbeat_interval_s),
            max_queue=e.int("SESAME_MAX_QUEUE", d.max_queue, lo=0, hi=100_000),
            max_batch=e.int("SESAME_MAX_BATCH", d.max_batch, lo=1, hi=64),
            semantic_max_tokens=e.int(
                "SESAME_SEMANTIC_MAX_TOKENS", d.semantic_max_tokens, lo=8, hi=MAX_SEMANTIC_TOKENS
            ),
            device=e.str("SESAME_DEVICE", d.device).lower(),
            torch_threads=e.int("SESAME_TORCH_THREADS", d.torch_threads, lo=0, hi=1024),
            drain_timeout_s=e.ms("SESAME_DRAIN_TIMEOUT_MS", d.drain_timeout_s),
            max_late_s=e.ms("SESAME_MAX_LATE_MS", d.max_late_s),
            voices_path=e.raw("SESAME_VOICES"),
            log_level=e.str("LOG_LEVEL", d.log_level).lower(),
            seed=None if e.raw("SESAME_SEED") is None else e.int("SESAME_SEED", 0, lo=0, hi=2**63 - 1),
            model_retry_s=e.ms("SESAME_MODEL_RETRY_MS", d.model_retry_s),
            stuck_factor=e.float("SESAME_STUCK_FACTOR", d.stuck_factor, lo=1.0, hi=1000.0),
            stuck_floor_s=e.ms("SESAME_STUCK_FLOOR_MS", d.stuck_floor_s),
            health_file=e.raw("SESAME_HEALTH_FILE"),
            piper_voice=e.raw("SESAME_PIPER_VOICE") or None,
            piper_threads=piper_threads_setting(e),
            engine_nice=e.int("SESAME_ENGINE_NICE", d.engine_nice, lo=0, hi=19),
            bark_decoder=e.str("SESAME_BARK_DECODER", d.bark_decoder).lower(),  # type: ignore[arg-type]
            bark_step=e.str("SESAME_BARK_STEP", d.bark_step).lower(),  # type: ignore[arg-type]
        )
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        if config.heartbeat_interval_s < 0.05:
            raise ConfigError("SESAME_HEARTBEAT_INTERVAL_MS must be at least 50")
        return config
