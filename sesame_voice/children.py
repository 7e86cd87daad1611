"""The supervisor's asyncio adapter: child processes, heartbeats on MQTT, ``/health`` probes.

``Supervisor`` carries out what ``SupervisorCore`` decides (see ``sesame_voice.supervisor``):

- each child runs in a process group of its own (``start_new_session``), so a signal reaches it
  and everything it started, and Ctrl-C in a terminal reaches only us; each child also gets
  ``PR_SET_PDEATHSIG`` = SIGKILL on Linux, so even a supervisor killed with SIGKILL leaves no
  orphan behind;
- one task per running child waits for its exit; one MQTT link reads every worker's heartbeat;
  the gateway is probed with ``GET /health`` (timeout ``probe_timeout_s``) when the core asks;
- the main loop sleeps until ``core.next_deadline()`` or until something happened;
- after every change the core's snapshot (restarts by role and reason, children) is written
  atomically to ``state_path``: the gateway shows it in ``/ready`` and counts it in ``/metrics``
  as ``sesame_restarts_total{role,reason}``. A file, not an MQTT message, so that the restart of
  the broker itself is visible too.

``replace(old, new)`` is one step of a rolling reload: start the new child, wait until it is ready
(a worker's ``ready`` heartbeat; a gateway's ``READY=1`` on the notify socket, see
``sesame_voice.notify``), then SIGTERM the old one (it drains: a worker refuses queued jobs so the
gateway places them elsewhere and finishes running ones; a gateway stops accepting, lets turns
finish, then closes its websockets with 1012) and wait for it to exit.

``stop()`` (SIGTERM/SIGINT): nothing restarts; gateway, workers, broker get SIGTERM in that order
(the process itself, so that it drains with its own helpers still alive), a frozen one SIGCONT
first; then each process group gets SIGKILL, for whoever is left after ``stop_timeout_s`` and
anything a child left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal

import httpx

from broker import logs, topics
from broker.errors import ProtocolError
from broker.link import MqttLink
from broker.messages import Heartbeat, decode_worker_message
from broker.settings import MqttNodes

from .child_process import ChildSpec, die_with_parent, signal_group, signal_main
from .notify import NotifyListener
from .supervisor import Action, Kill, Probe, Spawn, SupervisorCore

log = logs.get("sesame.supervisor")

# A reload step's end: the old one exited or was SIGKILLed (the new one serves), or the new one was not ready.
Replaced = Literal["exited", "killed", "not_ready"]


async def _exits_within(proc: asyncio.subprocess.Process, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await proc.wait()
    return proc.returncode is not None


class Supervisor:
    def __init__(
        self,
        core: SupervisorCore,
        *,
        mqtt_url: MqttNodes | None,
        state_path: Path | None,
        probe_timeout_s: float = 2.0,
        stop_timeout_s: float = 40.0,
        notify: NotifyListener | None = None,
    ) -> None:
        self.core = core
        self.notify = notify
        self._spawned: dict[str, asyncio.Event] = {}
        self.state_path = state_path
        self.probe_timeout_s = probe_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.specs: dict[str, ChildSpec] = {}
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self._wake = asyncio.Event()
        self._ready_waiters: dict[str, asyncio.Event] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._http = httpx.AsyncClient(timeout=probe_timeout_s)
        self.link = (
            None
            if mqtt_url is None
            else MqttLink(
                mqtt_url,
                client_id=f"sesame-supervisor-{os.getpid()}",
                subscriptions=[(topics.ALL_HEARTBEATS, 0)],
                on_message=self._on_message,
                on_connect=self._on_connect,
                on_disconnect=self._on_disconnect,
            )
        )

    async def __aenter__(self) -> Supervisor:
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.link is not None:
            await self.link.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self.stop()
            if self.link is not None:
                await self.link.close()
            await self._http.aclose()
        finally:
            assert self._tg is not None
            await self._tg.__aexit__(et, e, tb)

    # --- what up.py calls --------------------------------------------------------------------------

    def add(self, spec: ChildSpec, reason: str = "start") -> None:
        self.specs[spec.name] = spec
        self._carry_out(self.core.add(spec.name, spec.role, reason))

    async def run(self, stopping: asyncio.Event) -> None:
        """Carry out the core's timers until ``stopping`` is set or a child cannot run as
        configured (``core.halted``)."""
        loop = asyncio.get_running_loop()
        while not stopping.is_set() and self.core.halted is None:
            self._carry_out(self.core.tick(loop.time()))
            self._wake.clear()
            deadline = self.core.next_deadline()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    waits = {asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stopping.wait())}
                    try:
                        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        for w in waits:
                            w.cancel()

    async def wait_ready(self, worker_id: str, timeout_s: float) -> bool:
        event = self._ready_waiters.setdefault(worker_id, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            self._ready_waiters.pop(worker_id, None)
        return True

    async def replace(self, old: str, new: ChildSpec, ready_timeout_s: float) -> Replaced:
        """Start ``new``; once it is ready (a worker: its ``ready`` heartbeat; a gateway: its
        ``READY=1`` notification), drain and stop ``old`` (``retire``: bounded). When it is not
        ready in time, ``new`` is stopped and ``old`` keeps serving."""
        if new.worker_id is not None:
            self._ready_waiters.setdefault(new.worker_id, asyncio.Event())
        spawned = self._spawned.setdefault(new.name, asyncio.Event())
        self.add(new, reason="reload")
        log.info("reload_child_started", old=old, new=new.name, role=new.role)
        if not await self._wait_new_ready(new, spawned, ready_timeout_s):
            log.error("reload_child_not_ready", new=new.name, timeout_s=ready_timeout_s)
            await self.retire(new.name)
            return "not_ready"
        return "exited" if await self.retire(old) else "killed"

    async def _wait_new_ready(self, new: ChildSpec, spawned: asyncio.Event, timeout_s: float) -> bool:
        if new.worker_id is not None:
            return await self.wait_ready(new.worker_id, timeout_s)
        if self.notify is None:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await spawned.wait()
        except TimeoutError:
            return False
        proc = self.procs.get(new.name)
        return proc is not None and await self.notify.wait_ready(proc.pid, max(0.0, deadline - loop.time()))

    async def retire(self, name: str) -> bool:
        """Stop a child for good: SIGTERM (it drains), SIGKILL after ``stop_timeout_s`` (the drain
        deadline + a margin), never an open-ended wait. False when killed (``child_retire_killed``,
        counted in ``retire_kills``; a worker first gets SIGUSR1: its threads' stacks)."""
        self.core.remove(name)
        spec = self.specs.get(name)
        proc = self.procs.get(name)
        exited = True
        if proc is not None:
            log.info("child_retiring", child=name, pid=proc.pid)
            signal_group(proc.pid, signal.SIGCONT)
            signal_main(proc.pid, signal.SIGTERM)  # it drains, using its own children meanwhile
            exited = await _exits_within(proc, self.stop_timeout_s)
            if not exited:
                log.error("child_retire_killed", child=name, pid=proc.pid, waited_s=self.stop_timeout_s)
                if spec is not None:
                    self.core.retire_killed(spec.role)
                    if spec.role == "worker":
                        signal_main(proc.pid, signal.SIGUSR1)  # its stacks, in its log
                        await _exits_within(proc, 0.5)
            signal_group(proc.pid, signal.SIGKILL)  # whatever it left behind
            await _exits_within(proc, 5.0)
            if self.notify is not None:
                self.notify.forget(proc.pid)
        self.specs.pop(name, None)
        self._write_state()
        return exited

    async def stop(self) -> None:
        """Stop everything: gateway, then workers, then the broker."""
        self.core.stop()
        order = {"gateway": 0, "worker": 1, "broker": 2}
        for rank in range(3):
            names = [n for n, s in self.specs.items() if order[s.role] == rank and n in self.procs]
            procs = [self.procs[n] for n in names]
            for proc in procs:
                signal_group(proc.pid, signal.SIGCONT)  # a frozen process cannot handle SIGTERM
                signal_main(proc.pid, signal.SIGTERM)
            if procs:
                _, pending = await asyncio.wait(
                    [asyncio.ensure_future(p.wait()) for p in procs], timeout=self.stop_timeout_s
                )
                for proc in procs:
                    if proc.returncode is None:
                        log.warning("child_killed_at_stop", pid=proc.pid)
                    signal_group(proc.pid, signal.SIGKILL)  # it, or whatever it left behind
                if pending:
                    await asyncio.wait(pending, timeout=5.0)
        self._write_state()

    # --- actions -----------------------------------------------------------------------------------

    def _carry_out(self, actions: Sequence[Action]) -> None:
        assert self._tg is not None
        for action in actions:
            match action:
                case Spawn(name=name, reason=reason, crash_loop=crash_loop):
                    self._tg.create_task(self._spawn(name, reason, crash_loop), name=f"spawn:{name}")
                case Kill(name=name, reason=reason):
                    proc = self.procs.get(name)
                    if proc is not None:
                        log.warning("child_killed", child=name, pid=proc.pid, reason=reason)
                        signal_group(proc.pid, signal.SIGKILL)
                case Probe(name=name):
                    self._tg.create_task(self._probe(name), name=f"probe:{name}")
        if actions:
            self._write_state()

    async def _spawn(self, name: str, reason: str, crash_loop: bool) -> None:
        spec = self.specs.get(name)
        if spec is None or self.core.stopping:
            return
        loop = asyncio.get_running_loop()
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                env={**os.environ, **spec.env},
                start_new_session=True,
                preexec_fn=die_with_parent,  # prctl only; takes no locks
                pass_fds=spec.pass_fds,
            )
        except OSError as exc:
            log.error(  # noqa: TRY400 (the OS error says it all)
                "child_spawn_failed", child=name, role=spec.role, error=str(exc)
            )
            self._carry_out(self.core.spawn_failed(name, loop.time()))
            self._wake.set()
            return
        self.procs[name] = proc
        self.core.started(name, proc.pid, loop.time(), worker_id=spec.worker_id)
        if name in self._spawned:
            self._spawned.pop(name).set()
        fields = {"child": name, "role": spec.role, "pid": proc.pid, "reason": reason}
        if reason == "start":
            log.info("child_started", **fields)
        else:
            log.warning("child_restarted", crash_loop=crash_loop, **fields)
            if crash_loop:
                log.error("crash_loop", child=name, role=spec.role, retry_every_s=self.core.policy.max_s)
        self._write_state()
        self._wake.set()
        code = await proc.wait()
        if self.procs.get(name) is proc:
            del self.procs[name]
        now = loop.time()
        self._carry_out(self.core.exited(name, code, now))
        delay = self.core.restart_in(name, now)
        if self.core.halted is not None and self.core.halted[0] == name:
            log.error("child_config_error", child=name, role=spec.role, code=code, restarted=False)
        elif not self.core.stopping and name in self.core.children:
            log.warning(
                "child_exited", child=name, role=spec.role, pid=proc.pid, code=code, restart_in_s=delay
            )
        self._write_state()
        self._wake.set()

    async def _probe(self, name: str) -> None:
        spec = self.specs.get(name)
        if spec is None or spec.health_url is None:
            return
        loop = asyncio.get_running_loop()
        try:
            response = await self._http.get(spec.health_url)
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if not ok:
            log.warning("gateway_health_failed", child=name, url=spec.health_url)
        self._carry_out(self.core.probe_result(name, ok, loop.time()))
        self._wake.set()

    # --- MQTT --------------------------------------------------------------------------------------

    async def _on_connect(self, link: MqttLink) -> None:
        self.core.mqtt_connected(asyncio.get_running_loop().time())
        self._wake.set()

    def _on_disconnect(self) -> None:
        self.core.mqtt_disconnected()
        self._wake.set()

    async def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            beat = decode_worker_message(payload)
        except ProtocolError as exc:
            log.debug("bad_heartbeat", topic=topic, code=exc.code)
            return
        if not isinstance(beat, Heartbeat):
            return
        self.core.heartbeat(beat.worker_id, beat.state, beat.interval_s, asyncio.get_running_loop().time())
        if beat.state == "ready" and beat.worker_id in self._ready_waiters:
            self._ready_waiters[beat.worker_id].set()
        self._wake.set()

    # --- state for /ready --------------------------------------------------------------------------

    def _write_state(self) -> None:
        if self.state_path is None:
            return
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"pid": os.getpid(), **self.core.snapshot()}))
            tmp.replace(self.state_path)
        except OSError as exc:
            log.warning("supervisor_state_not_written", path=str(self.state_path), error=str(exc))
