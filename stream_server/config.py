"""Gateway settings, built once from the environment (the plan's SESAME_* names keep its meaning)."""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from broker import cpu_slice
from broker.errors import ConfigError
from broker.messages import ACK_HOLD_S
from broker.settings import Env, MqttNodes
from broker.topics import check_id
from stream_server.core.actions import WORKERS
from stream_server.core.failover import DEFAULTS, LOCAL_TIERS, FailoverConfig
from synth_worker.child_priority import DEFAULT_NICE

DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883"

# PLAN.md 4.2, preloadCommonPhrases.
COMMON_PHRASES = (
    "Hello, I'm Maya.",
    "How can I help you today?",
    "Tell me more about that.",
    "That's interesting.",
    "I understand.",
)


def _phrases(env: Env, default: tuple[str, ...]) -> tuple[str, ...]:
    if not env.bool("SESAME_CACHE_PRELOAD", True):
        return ()
    path = env.raw("SESAME_PRELOAD_PHRASES")
    if path is None:
        return default
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"SESAME_PRELOAD_PHRASES={path}: {exc}") from exc
    return tuple(line.strip() for line in lines if line.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(host: str, token: str | None, allow_open: bool, clients: int = 0) -> None:
    """Fail closed: serving beyond loopback needs SESAME_AUTH_TOKEN (or clients' own tokens),
    unless SESAME_ALLOW_OPEN=1 says it is meant (the gateway then logs a warning at start)."""
    if token is None and not clients and not allow_open and not is_loopback(host):
        raise ConfigError(
            f"SESAME_HOST={host} is beyond loopback and no token is set: anyone could use the "
            "gateway. Set SESAME_AUTH_TOKEN (or clients' own, SESAME_CLIENT_TOKENS), bind 127.0.0.1 "
            "behind nginx, or SESAME_ALLOW_OPEN=1."
        )


_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def client_tokens(env: Env, *others: str | None) -> tuple[tuple[str, str], ...]:
    """Clients' own tokens, ``(name, token)``: SESAME_CLIENT_TOKENS (``name:token,...``) and
    SESAME_CLIENT_TOKENS_FILE (a ``name:token`` a line, ``#`` comments). A request with one of them
    is that client for its fair share (core/admission.py) and in logs, by name. Names and tokens
    are each used once and differ from ``others`` (the shared and read-only tokens); an error
    names the entry, never its token."""
    entries = [("SESAME_CLIENT_TOKENS", e) for e in (env.raw("SESAME_CLIENT_TOKENS") or "").split(",")]
    if path := env.raw("SESAME_CLIENT_TOKENS_FILE"):
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"SESAME_CLIENT_TOKENS_FILE={path}: cannot read it ({exc})") from exc
        entries += [(f"SESAME_CLIENT_TOKENS_FILE line {i}", line) for i, line in enumerate(lines, 1)]
    out: list[tuple[str, str]] = []
    for where, entry in entries:
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        name, sep, token = (part.strip() for part in entry.strip().partition(":"))
        if not sep or not token or not _CLIENT_NAME.fullmatch(name) or any(c.isspace() for c in token):
            raise ConfigError(f"{where}: an entry is 'name:token' (name: letters, digits, _.@-)")
        if any(name == n or token == t for n, t in out) or token in others:
            raise ConfigError(f"{where}: client {name!r} repeats a name or a token already in use")
        out.append((name, token))
    return tuple(out)


def default_state_dir() -> str:
    return str(Path.home() / ".local" / "state" / "sesame-voice")


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Probes, persisted uptime and alerts (docs/monitoring.md)."""

    state_dir: str = field(default_factory=default_state_dir)  # SESAME_STATE_DIR
    alert_webhook: str | None = None  # SESAME_ALERT_WEBHOOK
    alert_after_s: float = 30.0  # SESAME_ALERT_AFTER (ms in env)
    uptime_target: float = 99.9  # SESAME_UPTIME_TARGET (percent)

    @classmethod
    def from_env(cls, env: Env) -> MonitorConfig:
        webhook = env.raw("SESAME_ALERT_WEBHOOK")
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise ConfigError("SESAME_ALERT_WEBHOOK must be an http:// or https:// URL")
        d = cls()  # each default is the field's, written once
        return cls(
            state_dir=env.str("SESAME_STATE_DIR", d.state_dir),
            alert_webhook=webhook or None,
            alert_after_s=env.ms("SESAME_ALERT_AFTER", d.alert_after_s),
            uptime_target=env.float("SESAME_UPTIME_TARGET", d.uptime_target, lo=0.0, hi=100.0),
        )


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    mqtt_url: MqttNodes
    gateway_id: str
    host: str = "127.0.0.1"
    port: int = 8000
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    max_length: int = 200  # SESAME_MAX_LENGTH: characters per sentence job
    first_chunk_min_chars: int = 20
    lookahead: int = 3  # SESAME_LOOKAHEAD: sentences in synthesis per session, at most
    lookahead_s: float = 8.0  # SESAME_LOOKAHEAD_S: seconds of audio ahead of the listener
    default_voice: str = "maya"
    voices_path: str | None = None
    elevenlabs_api_key: str | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    edge_tts_endpoint: str | None = None
    cloud_connect_timeout_s: float = 1.5
    piper_voice: str | None = None  # SESAME_PIPER_VOICE: a Piper .onnx model for the piper tier
    engine_nice: int = DEFAULT_NICE  # SESAME_ENGINE_NICE: the tiers' child processes (child_priority.py)
    cache_enabled: bool = True  # SESAME_CACHE_ENABLED
    cache_ttl_s: float = 3600.0  # SESAME_CACHE_TTL
    cache_max_mb: float = 100.0
    # The plan's common phrases, made by the primary voice into the cache once a worker is ready.
    preload_phrases: tuple[str, ...] = COMMON_PHRASES
    metrics_enabled: bool = True  # SESAME_METRICS_ENABLED
    health_check_interval_s: float = 10.0  # SESAME_HEALTH_CHECK_INTERVAL (ms in env)
    publish_session_events: bool = True
    auth_token: str | None = field(default=None, repr=False)  # SESAME_AUTH_TOKEN: identity = address
    read_token: str | None = field(default=None, repr=False)  # SESAME_READ_TOKEN: /metrics, status only
    # SESAME_CLIENT_TOKENS / SESAME_CLIENT_TOKENS_FILE: (name, token); a token names its client
    client_tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    allow_open: bool = False  # SESAME_ALLOW_OPEN: serve beyond loopback without a token
    allowed_origins: tuple[str, ...] = ()  # SESAME_ALLOWED_ORIGINS: for /ws; empty: any
    # HTTP limits before work (http/guard.py, http/slow_headers.py)
    max_body_bytes: int = 65_536  # SESAME_MAX_BODY_BYTES
    header_timeout_s: float = 10.0  # SESAME_HEADER_TIMEOUT (ms in env)
    body_timeout_s: float = 10.0  # SESAME_BODY_TIMEOUT (ms in env)
    http_max_concurrent: int = 64  # SESAME_HTTP_MAX_CONCURRENT
    encode_threads: int = 2  # SESAME_ENCODE_THREADS: mp3/ogg/flac encoding off the event loop
    # SESAME_CPU_SLICE_US: the CPU slice the gateway asks the kernel for (broker/cpu_slice.py): a
    # process its frames wake (nginx, a local client) waits at most this long; 0: the kernel's.
    cpu_slice_us: int = 100
    record_dir: str | None = None  # SESAME_RECORD_DIR: record sessions' text as replay traces
    # SESAME_SUPERVISOR_STATE (set by `sesame-voice up`): its restarts, shown in /ready and /metrics
    supervisor_state: str | None = None
    # SESAME_DRAIN_TIMEOUT_MS: on SIGTERM, how long turns in flight may finish before 1012
    drain_timeout_s: float = 30.0
    max_sessions: int = 1000  # SESAME_MAX_SESSIONS: attached sessions (core/admission.py)
    max_detached: int = 100  # SESAME_MAX_DETACHED: sessions kept for a resume
    client_max_sessions: int = 16  # SESAME_CLIENT_MAX_SESSIONS: open sessions per client
    client_max_in_flight: int = 3  # SESAME_CLIENT_MAX_IN_FLIGHT: sentences synthesized at once
    retry_after_s: float = 2.0  # SESAME_RETRY_AFTER (ms in env): what `overloaded` suggests
    # Websocket resume (docs/protocol.md): how long a session whose socket dropped is kept, and
    # how many of its last frames are kept for the client to pick up from.
    resume_grace_s: float = 30.0  # SESAME_RESUME_GRACE (ms in env); 0 turns resume off
    resume_frames: int = 1500  # SESAME_RESUME_FRAMES (~60 s of 40 ms pcm16 frames)
    # MQTT-only sessions: closed after this long without a message from their publisher.
    mqtt_session_idle_s: float = 300.0  # SESAME_MQTT_SESSION_IDLE (ms in env)
    log_level: str = "INFO"
    # Concurrency caps of the in-process tiers that use this machine's CPU, and how long a sentence
    # may wait for one before it moves on (stream_server/core/tier_queue.py).
    local_tier_caps: Mapping[str, int] = field(
        default_factory=lambda: default_local_tier_caps(os.cpu_count() or 1)
    )
    local_tier_queue_s: float = 1.0  # SESAME_LOCAL_TIER_QUEUE_MS
    # SESAME_DEBUG_STAMPS: stamp each hop of every sentence (jobs ask workers to stamp theirs) and
    # log one ``hop_stamps`` line per job (bench/ttfa_timeline.py). Off by default.
    debug_stamps: bool = False
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewayConfig:
        env = Env(environ)
        d = cls(mqtt_url=MqttNodes.parse(DEFAULT_MQTT_URL), gateway_id="defaults")  # each default, once
        tiers = tuple(t.strip() for t in env.str("SESAME_TIERS", ",".join(DEFAULTS.tiers)).split(","))
        for tier in tiers:
            if tier not in (WORKERS, *LOCAL_TIERS):
                raise ConfigError(
                    f"SESAME_TIERS: unknown tier {tier!r} (known: workers, {', '.join(LOCAL_TIERS)})"
                )
        key = env.raw("ELEVENLABS_API_KEY")
        if key is None:
            tiers = tuple(t for t in tiers if t != "elevenlabs")  # not configured: not a tier at all
        failover = FailoverConfig(
            tiers=tiers,
            # a worker holds a started job's ack for its first audio (broker/messages.py)
            ack_timeout_s=env.ms("SESAME_ACK_TIMEOUT", DEFAULTS.ack_timeout_s, lo_s=2 * ACK_HOLD_S),
            timeout_s=env.ms("SESAME_TIMEOUT", DEFAULTS.timeout_s),
            stall_timeout_s=env.ms("SESAME_STALL_TIMEOUT", DEFAULTS.stall_timeout_s),
            max_retries=env.int("SESAME_MAX_RETRIES", DEFAULTS.max_retries, lo=0, hi=100),
            retry_delay_s=env.ms("SESAME_RETRY_DELAY", DEFAULTS.retry_delay_s),
            missed_heartbeats=env.int("SESAME_MISSED_HEARTBEATS", DEFAULTS.missed_heartbeats, lo=1, hi=100),
            probe_interval_s=env.ms("SESAME_PROBE_INTERVAL", DEFAULTS.probe_interval_s),
            worker_retention_s=env.ms("SESAME_WORKER_RETENTION", DEFAULTS.worker_retention_s),
        )
        host = env.str("SESAME_HOST", d.host)
        clients = client_tokens(env, env.raw("SESAME_AUTH_TOKEN"), env.raw("SESAME_READ_TOKEN"))
        allow_open = env.bool("SESAME_ALLOW_OPEN", d.allow_open)
        check_exposure(host, env.raw("SESAME_AUTH_TOKEN"), allow_open, len(clients))
        gateway_id = env.str("SESAME_GATEWAY_ID", f"gw-{uuid.uuid4().hex[:8]}")
        check_id(gateway_id, "SESAME_GATEWAY_ID")
        return cls(
            mqtt_url=MqttNodes.parse(env.str("SESAME_MQTT_URL", DEFAULT_MQTT_URL)),
            gateway_id=gateway_id,
            host=host,
            port=env.int("SESAME_PORT", d.port, lo=0, hi=65535),
            failover=failover,
            max_length=env.int("SESAME_MAX_LENGTH", d.max_length, lo=20, hi=4000),
            first_chunk_min_chars=env.int(
                "SESAME_FIRST_CHUNK_MIN_CHARS", d.first_chunk_min_chars, lo=0, hi=1000
            ),
            lookahead=env.int("SESAME_LOOKAHEAD", d.lookahead, lo=1, hi=32),
            lookahead_s=env.float("SESAME_LOOKAHEAD_S", d.lookahead_s, lo=0.5, hi=120.0),
            default_voice=env.str("SESAME_VOICE", d.default_voice),
            voices_path=env.raw("SESAME_VOICES"),
            elevenlabs_api_key=key,
            elevenlabs_base_url=env.str("ELEVENLABS_BASE_URL", d.elevenlabs_base_url),
            edge_tts_endpoint=env.raw("SESAME_EDGE_TTS_ENDPOINT"),
            cloud_connect_timeout_s=env.ms("SESAME_CLOUD_CONNECT_TIMEOUT", d.cloud_connect_timeout_s),
            piper_voice=env.raw("SESAME_PIPER_VOICE"),
            engine_nice=env.int("SESAME_ENGINE_NICE", d.engine_nice, lo=0, hi=19),
            cache_enabled=env.bool("SESAME_CACHE_ENABLED", d.cache_enabled),
            cache_ttl_s=env.float("SESAME_CACHE_TTL", d.cache_ttl_s, lo=0.0),
            cache_max_mb=env.float("SESAME_CACHE_MAX_MB", d.cache_max_mb, lo=0.0),
            preload_phrases=_phrases(env, d.preload_phrases),
            metrics_enabled=env.bool("SESAME_METRICS_ENABLED", d.metrics_enabled),
            health_check_interval_s=env.ms("SESAME_HEALTH_CHECK_INTERVAL", d.health_check_interval_s),
            publish_session_events=env.bool("SESAME_PUBLISH_SESSION_EVENTS", d.publish_session_events),
            auth_token=env.raw("SESAME_AUTH_TOKEN"),
            read_token=env.raw("SESAME_READ_TOKEN"),
            client_tokens=clients,
            allow_open=allow_open,
            allowed_origins=tuple(
                o.strip()
                for o in env.str("SESAME_ALLOWED_ORIGINS", ",".join(d.allowed_origins)).split(",")
                if o.strip()
            ),
            max_body_bytes=env.int("SESAME_MAX_BODY_BYTES", d.max_body_bytes, lo=1024),
            header_timeout_s=env.ms("SESAME_HEADER_TIMEOUT", d.header_timeout_s),
            body_timeout_s=env.ms("SESAME_BODY_TIMEOUT", d.body_timeout_s),
            http_max_concurrent=env.int("SESAME_HTTP_MAX_CONCURRENT", d.http_max_concurrent, lo=1),
            encode_threads=env.int("SESAME_ENCODE_THREADS", d.encode_threads, lo=1, hi=64),
            cpu_slice_us=_cpu_slice(env, d.cpu_slice_us),
            record_dir=env.raw("SESAME_RECORD_DIR"),
            supervisor_state=env.raw("SESAME_SUPERVISOR_STATE"),
            drain_timeout_s=env.ms("SESAME_DRAIN_TIMEOUT_MS", d.drain_timeout_s),
            max_sessions=env.int("SESAME_MAX_SESSIONS", d.max_sessions, lo=1),
            max_detached=env.int("SESAME_MAX_DETACHED", d.max_detached, lo=0),
            client_max_sessions=env.int("SESAME_CLIENT_MAX_SESSIONS", d.client_max_sessions, lo=1),
            client_max_in_flight=env.int("SESAME_CLIENT_MAX_IN_FLIGHT", d.client_max_in_flight, lo=1),
            retry_after_s=env.ms("SESAME_RETRY_AFTER", d.retry_after_s),
            resume_grace_s=env.ms("SESAME_RESUME_GRACE", d.resume_grace_s),
            resume_frames=env.int("SESAME_RESUME_FRAMES", d.resume_frames, lo=0, hi=4000),
            mqtt_session_idle_s=env.ms("SESAME_MQTT_SESSION_IDLE", d.mqtt_session_idle_s),
            log_level=env.str("LOG_LEVEL", d.log_level),
            local_tier_caps=_local_tier_caps(env, d.local_tier_caps),
            local_tier_queue_s=env.ms("SESAME_LOCAL_TIER_QUEUE_MS", d.local_tier_queue_s),
            debug_stamps=env.bool("SESAME_DEBUG_STAMPS", d.debug_stamps),
            monitor=MonitorConfig.from_env(env),
        )


def default_local_tier_caps(cpus: int) -> dict[str, int]:
    """A quarter of the cores for the Piper tier (at least 1), as many for espeak-ng (at least 2):
    fallbacks never take the cores the primary voice's workers need."""
    quarter = max(1, cpus // 4)
    return {"piper": quarter, "espeak-ng": max(2, quarter)}


def _local_tier_caps(env: Env, default: Mapping[str, int]) -> dict[str, int]:
    return {
        "piper": env.int("SESAME_PIPER_TIER_CONCURRENCY", default["piper"], lo=1, hi=256),
        "espeak-ng": env.int("SESAME_ESPEAK_CONCURRENCY", default["espeak-ng"], lo=1, hi=256),
    }


def _cpu_slice(env: Env, default: int) -> int:
    value = env.int("SESAME_CPU_SLICE_US", default, lo=0, hi=cpu_slice.MOST_US)
    if 0 < value < cpu_slice.LEAST_US:
        raise ConfigError(f"SESAME_CPU_SLICE_US: 0 or {cpu_slice.LEAST_US}-{cpu_slice.MOST_US}, not {value}")
    return value
