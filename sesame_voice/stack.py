"""The children of one ``sesame-voice up``: their specs, and the rolling reload.

A reload replaces the workers and, beside them, the gateway: each new process starts, becomes
ready, and only then is the old one it replaces told to drain and waited on until it exits, or
killed at its bound (``Supervisor.replace``, ``Supervisor.retire``), so capacity never drops. The
workers are replaced ``surge`` at a time (``capacity.reload_surge``: SESAME_RELOAD_SURGE, or by
default all of them for Piper when memory holds them, one for Bark); the next slot starts when
one of those has finished (its old process gone), and a successor that is not ready in time stops
the reload (the slots not yet begun keep their workers). Each step is logged
(``reload_step``) and written to the reload report (``sesame_voice.reload_report``) that
``sesame-voice reload`` follows and prints.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from broker import logs
from stream_server.http.listen import listening_socket

from . import host_memory
from .capacity import reload_surge
from .child_process import ChildSpec
from .children import Supervisor
from .local_broker import LocalBroker
from .reload_report import ReloadReport

log = logs.get("sesame.up")

CLI = (sys.executable, "-m", "sesame_voice.cli")


@dataclass(frozen=True, slots=True)
class StackConfig:
    host: str
    port: int
    workers: int
    reload_ready_timeout_s: float
    engine: str = "piper"
    surge: int | None = None  # workers replaced at once; None: auto (capacity.reload_surge)


class Stack:
    def __init__(
        self,
        config: StackConfig,
        env: Mapping[str, str],
        sup: Supervisor,
        report: ReloadReport,
        broker: LocalBroker | None,
    ) -> None:
        self.config, self.env, self.sup, self.report, self.broker = config, env, sup, report, broker
        self.slots: dict[int, tuple[str, int]] = {}  # slot -> (child name, generation)
        self.gateway: tuple[str, int] = ("gateway", 0)
        # Made once, inherited by every gateway (stream_server/http/listen.py): see the reload.
        self.listener = listening_socket(config.host, config.port, {})
        self.listener.set_inheritable(True)
        self._reload_lock = asyncio.Lock()

    def worker_spec(self, slot: int, generation: int) -> ChildSpec:
        base = self.env.get("SESAME_WORKER_ID", "worker")
        wid = f"{base}-{slot}" if generation == 0 else f"{base}-{slot}-r{generation}"
        env = {**self.env, "SESAME_WORKER_ID": wid}
        if self.broker is not None:
            env["SESAME_MQTT_URL"] = self.broker.worker_url(wid, self.sup).env_value()
        return ChildSpec(wid, "worker", (*CLI, "worker"), env, worker_id=wid)

    def start_workers(self) -> None:
        for slot in range(1, self.config.workers + 1):
            spec = self.worker_spec(slot, 0)
            self.slots[slot] = (spec.name, 0)
            self.sup.add(spec)

    def gateway_spec(self, generation: int) -> ChildSpec:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "") else self.config.host
        url = f"http://{host}:{self.config.port}/health"
        name = "gateway" if generation == 0 else f"gateway-r{generation}"
        env = {**self.env, "SESAME_LISTEN_FD": str(self.listener.fileno())}
        if self.broker is not None:
            env["SESAME_MQTT_URL"] = self.broker.url("gateway").env_value()
        return ChildSpec(
            name, "gateway", (*CLI, "gateway"), env, health_url=url, pass_fds=(self.listener.fileno(),)
        )

    def start_gateway(self) -> None:
        self.gateway = (self.gateway_spec(0).name, 0)
        self.sup.add(self.gateway_spec(0))

    async def reload(self) -> None:
        if self._reload_lock.locked():
            log.warning("reload_already_running")
            return
        async with self._reload_lock:
            surge = self.surge()
            log.info("reload_started", workers=len(self.slots), surge=surge)
            self.report.begin(
                f"reload started: {len(self.slots)} worker(s), {surge} at a time, the gateway beside them"
            )
            # The gateway's successor does not depend on the workers' (it finds them by their
            # heartbeats, old or new): replaced side by side, a reload lasts the longer of the two
            # rather than their sum.
            workers_ok, gateway_ok = await asyncio.gather(self._reload_workers(surge), self._reload_gateway())
            ok = workers_ok and gateway_ok
            elapsed = self.report.elapsed_s
            log.info("reload_done", ok=ok, seconds=elapsed)
            self.report.finish(ok, f"reload {'done' if ok else 'FAILED'} in {elapsed} s")

    def surge(self) -> int:
        """Workers this reload replaces at once (``capacity.reload_surge``), sized by the memory
        available now and the largest running worker with its children."""
        sizes = [
            host_memory.tree_rss_bytes(proc.pid)
            for name, _ in self.slots.values()
            if (proc := self.sup.procs.get(name)) is not None
        ]
        known = [size for size in sizes if size]
        return reload_surge(
            self.config.surge,
            self.config.engine,
            len(self.slots),
            host_memory.available_bytes(),
            max(known) if known else None,
        )

    async def _reload_workers(self, surge: int) -> bool:
        gate = asyncio.Semaphore(surge)  # FIFO: the slots start in order, `surge` at a time
        failed = False

        async def one(slot: int) -> bool:
            nonlocal failed
            async with gate:
                if failed:
                    return False  # a successor was not ready: the slots not begun keep their workers
                name, generation = self.slots[slot]
                new = self.worker_spec(slot, generation + 1)
                if not await self._replace(name, new):
                    failed = True
                    return False
                self.slots[slot] = (new.name, generation + 1)
                return True

        return all(await asyncio.gather(*(one(slot) for slot in sorted(self.slots))))

    async def _reload_gateway(self) -> bool:
        name, generation = self.gateway
        gateway = self.gateway_spec(generation + 1)
        if not await self._replace(name, gateway):
            return False
        self.gateway = (gateway.name, generation + 1)
        return True

    async def _replace(self, old: str, new: ChildSpec) -> bool:
        before = self.sup.procs.get(old)
        old_pid = before.pid if before is not None else None
        began = self.report.elapsed_s
        self._step(f"{new.role} {old} (pid {old_pid}): starting {new.name}")
        result = await self.sup.replace(old, new, self.config.reload_ready_timeout_s)
        took = round(self.report.elapsed_s - began, 2)
        if result == "not_ready":
            self._step(
                f"{new.role} {new.name} was not ready within {self.config.reload_ready_timeout_s} s: "
                f"stopped it, {old} keeps serving"
            )
            return False
        after = self.sup.procs.get(new.name)
        gone = (
            "drained and exited"
            if result == "exited"
            else f"did not exit within {self.sup.stop_timeout_s} s: SIGKILLed"
        )
        self._step(
            f"{new.role} {new.name} (pid {after.pid if after else None}) ready; "
            f"{old} (pid {old_pid}) {gone}; {took} s"
        )
        return True

    def _step(self, text: str) -> None:
        log.info("reload_step", step=text)
        self.report.step(text)
