"""Reading settings from the environment: typed, validated, with the variable named in every error.

Each process builds its frozen config dataclass once at its entry point from these helpers.

The plan's compose file names some settings without the ``SESAME_`` prefix (``MODEL_NAME``,
``USE_GPU``, ``CACHE_DIR``, ``MAX_WORKERS``, ``PRELOAD_MODELS``). Where such a name means what one
of ours means, it is read as an alias (``PLAN_ALIASES``): used when our name is unset, our name
winning when both are set. ``USE_GPU`` true/false reads as ``SESAME_DEVICE`` cuda/cpu.
"""

from __future__ import annotations

import builtins
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

from .errors import ConfigError

_N = TypeVar("_N", int, float)

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def _same(value: str) -> str:
    return value


def _use_gpu(value: str) -> str:
    if value.lower() in TRUE:
        return "cuda"
    if value.lower() in FALSE:
        return "cpu"
    raise ConfigError(f"USE_GPU={value!r} is not a boolean (use true/false)")


@dataclass(frozen=True, slots=True)
class Alias:
    """A name from the plan read in place of one of ours (``of``), its value converted."""

    name: str
    of: str
    convert: Callable[[str], str] = _same


PLAN_ALIASES: tuple[Alias, ...] = (
    Alias("MODEL_NAME", "SESAME_MODEL"),
    Alias("CACHE_DIR", "SESAME_MODEL_CACHE"),
    Alias("USE_GPU", "SESAME_DEVICE", _use_gpu),
    Alias("PRELOAD_MODELS", "SESAME_PRELOAD_MODELS"),
    Alias("MAX_WORKERS", "SESAME_WORKERS"),
)
_ALIAS_OF = {alias.of: alias for alias in PLAN_ALIASES}


class Env:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if environ is None else environ

    def raw(self, name: builtins.str) -> builtins.str | None:
        value = self._get(name)
        if value is None and (alias := _ALIAS_OF.get(name)) is not None:
            found = self._get(alias.name)
            return None if found is None else alias.convert(found)
        return value

    def _get(self, name: builtins.str) -> builtins.str | None:
        value = self._env.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def label(self, name: builtins.str) -> builtins.str:
        """The variable a value was read from, for errors: ``MAX_WORKERS (as SESAME_WORKERS)``."""
        alias = _ALIAS_OF.get(name)
        if alias is not None and self._get(name) is None and self._get(alias.name) is not None:
            return f"{alias.name} (as {name})"
        return name

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        return self.raw(name) or default

    def int(self, name: builtins.str, default: int, lo: int | None = None, hi: int | None = None) -> int:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError as exc:
            raise ConfigError(f"{self.label(name)}={raw!r} is not an integer") from exc
        return _bounded(self.label(name), value, lo, hi)

    def float(
        self,
        name: builtins.str,
        default: builtins.float,
        lo: builtins.float | None = None,
        hi: builtins.float | None = None,
    ) -> builtins.float:
        raw = self.raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"{self.label(name)}={raw!r} is not a number") from exc
        if math.isnan(value):
            raise ConfigError(f"{self.label(name)} is NaN")
        return _bounded(self.label(name), value, lo, hi)

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        raw = self.raw(name)
        if raw is None:
            return default
        if raw.lower() in TRUE:
            return True
        if raw.lower() in FALSE:
            return False
        raise ConfigError(f"{self.label(name)}={raw!r} is not a boolean (use true/false)")

    def ms(self, name: builtins.str, default_s: builtins.float, lo_s: builtins.float = 0.0) -> builtins.float:
        """The plan gives durations in milliseconds (SESAME_TIMEOUT=10000); we keep seconds inside."""
        return self.float(name, default_s * 1000.0, lo=lo_s * 1000.0) / 1000.0


def _bounded(name: str, value: _N, lo: _N | None, hi: _N | None) -> _N:
    if lo is not None and value < lo:
        raise ConfigError(f"{name}={value} is below {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name}={value} is above {hi}")
    return value


@dataclass(frozen=True, slots=True)
class MqttUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ConfigError(f"SESAME_MQTT_URL must look like mqtt://host:port, got scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ConfigError("SESAME_MQTT_URL has no host")
        try:
            port = parts.port or 1883
        except ValueError as exc:
            raise ConfigError("SESAME_MQTT_URL has an invalid port") from exc
        user, password = parts.username, parts.password
        return cls(
            parts.hostname,
            port,
            None if user is None else unquote(user),
            None if password is None else unquote(password),
        )

    def env_value(self) -> str:
        """The URL with its password, for SESAME_MQTT_URL in a child's environment. Never log it."""
        if self.username is None:
            return str(self)
        secret = f":{quote(self.password, safe='')}" if self.password is not None else ""
        return f"mqtt://{quote(self.username, safe='')}{secret}@{self.host}:{self.port}"

    def __str__(self) -> str:
        # Never print the password.
        user = f"{self.username}@" if self.username else ""
        return f"mqtt://{user}{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MqttNodes:
    """``SESAME_MQTT_URL``: one broker, or the nodes of one broker cluster, comma-separated, in the
    order the link tries them (``mqtt://a:1883,mqtt://b:1883``)."""

    urls: tuple[MqttUrl, ...]

    @classmethod
    def parse(cls, text: str) -> MqttNodes:
        parts = [part.strip() for part in text.split(",")]
        if any(not part for part in parts):
            raise ConfigError(f"SESAME_MQTT_URL has an empty entry in {text!r}")
        urls = tuple(MqttUrl.parse(part) for part in parts)
        if len(set(urls)) != len(urls):
            raise ConfigError("SESAME_MQTT_URL names one broker node twice")
        return cls(urls)

    @classmethod
    def of(cls, url: MqttUrl | MqttNodes) -> MqttNodes:
        return url if isinstance(url, MqttNodes) else cls((url,))

    @property
    def first(self) -> MqttUrl:
        return self.urls[0]

    def __len__(self) -> int:
        return len(self.urls)

    def env_value(self) -> str:
        """The nodes with their passwords, for SESAME_MQTT_URL in a child's environment. Never log it."""
        return ",".join(url.env_value() for url in self.urls)

    def __str__(self) -> str:
        return ",".join(str(url) for url in self.urls)
