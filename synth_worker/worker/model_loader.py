"""One attempt to load and warm up the worker's model. When an attempt runs is the pure
``synth_worker.model_retry.ModelRetry``'s (healing without a restart); the worker's deadline task
starts the attempts it answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from broker import logs
from broker.errors import EngineError
from broker.sdnotify import Notifier
from synth_worker.config import WorkerConfig
from synth_worker.core import WorkerCore
from synth_worker.engines import WorkerEngine
from synth_worker.job_actions import Action

log = logs.get("sesame.worker")


class ModelLoader:
    def __init__(
        self,
        config: WorkerConfig,
        core: WorkerCore,
        engine: WorkerEngine,
        notifier: Notifier,
        *,
        clock: Callable[[], float],
        apply: Callable[[list[Action]], Awaitable[None]],
        state_changed: Callable[[], None],
    ) -> None:
        self.config = config
        self.core = core
        self.engine = engine
        self.notifier = notifier
        self.clock = clock
        self._apply = apply  # the job runner carries out the core's actions
        self._state_changed = state_changed  # a heartbeat at once
        self.load_s = 0.0

    async def attempt(self, attempt: int) -> bool:
        """Load (and warm up) the model; True when the worker is ready."""
        config = self.config
        try:
            if config.preload_models or config.warmup_on_start:
                load_s = self.load_s = await self.engine.load()
                self.core.model = self.engine.model
                log.info("model_loaded", model=self.engine.model, load_s=round(load_s, 3))
                if config.warmup_on_start:
                    self.core.warming()
                    self._state_changed()
                    warm_s = await self.engine.warm_up()
                    log.info("model_warmed_up", warm_up_s=round(warm_s, 3))
            else:
                log.info("model_load_deferred", reason="SESAME_PRELOAD_MODELS=false; loads on the first job")
            await self._apply(self.core.ready(self.clock()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the worker stays up and says why (no crash loop)
            reason = str(exc) or type(exc).__name__
            log.error(  # noqa: TRY400 - the traceback only for what is not an EngineError
                "engine_unavailable",
                engine=self.engine.name,
                reason=reason,
                attempt=attempt,
                exc_info=not isinstance(exc, EngineError),
            )
            await self._apply(self.core.unavailable(reason))
            self._state_changed()
            return False
        log.info("worker_ready", worker_id=config.worker_id, attempt=attempt)
        self.notifier.notify("READY=1", "STATUS=ready")
        self._state_changed()
        return True
