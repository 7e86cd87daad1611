"""One exception root for sesame-voice.

    SesameError
    ├── ProtocolError            bad input on any wire (websocket, HTTP body, MQTT payload); has a code
    │   └── Overloaded           no room now (the gateway's or this client's share); has retry_after_s
    ├── ConfigError              a setting that cannot be used
    ├── BrokerError              the MQTT link failed (translated from aiomqtt.MqttError)
    │   └── PubackLost           a publish's connection closed before the broker acknowledged it
    ├── BrokerStartError         the local mosquitto could not be started
    └── EngineError              an engine could not speak; has a code
        ├── EngineUnavailable    the engine cannot run here (no model, no binary, no key)
        ├── EngineTimeout        the engine did not answer in time
        └── EngineCancelled      the job was cancelled (barge-in); not a failure

Third-party exceptions are translated where they enter (``raise ... from exc``). ``error_code``
maps any exception to the code a client sees.
"""

from __future__ import annotations


class SesameError(Exception):
    code = "internal_error"


class ProtocolError(SesameError):
    """Bad input on a wire. ``code`` is the client-facing code."""

    code = "bad_message"

    def __init__(self, message: str, code: str = "bad_message") -> None:
        super().__init__(message)
        self.code = code


class Overloaded(ProtocolError):
    """Refused for lack of room (the gateway's or this client's share): try again after
    ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message, code="overloaded")
        self.retry_after_s = retry_after_s


class ConfigError(SesameError):
    code = "config_error"


# A process's exit status for "cannot run as configured" (sysexits.h EX_CONFIG): restarting it
# would only fail again, so a supervisor stops instead (sesame_voice/supervisor.py).
EXIT_CONFIG = 78


class BrokerError(SesameError):
    code = "broker_unavailable"


class PubackLost(BrokerError):
    """The connection a QoS 1 publish was written on closed before its PUBACK: it may or may not
    have reached the broker, and its acknowledgement can no longer come."""


class BrokerStartError(BrokerError):
    code = "broker_start_failed"


class EngineError(SesameError):
    code = "engine_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class EngineUnavailable(EngineError):
    code = "engine_unavailable"


class EngineTimeout(EngineError):
    code = "engine_timeout"


class EngineCancelled(EngineError):
    code = "cancelled"


# The one table from exception class to client-facing error code (most specific first).
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (EngineCancelled, "cancelled"),
    (EngineTimeout, "engine_timeout"),
    (EngineUnavailable, "engine_unavailable"),
    (BrokerError, "broker_unavailable"),
    (ConfigError, "config_error"),
    (TimeoutError, "timeout"),
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, (ProtocolError, EngineError)):
        return exc.code
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return "internal_error"
