"""Loading and warming the worker's model, retried while it cannot be (healing without a restart)."""

from __future__ import annotations

import asyncio

from broker.errors import EngineError
from synth_worker.worker.base import WorkerBase, log


class ModelPreparation(WorkerBase):
    """Load (and warm up) the model; retry every SESAME_MODEL_RETRY_MS while it cannot be."""

    async def _prepare(self) -> None:
        """Load (and warm up) the model; while it cannot be, retry every SESAME_MODEL_RETRY_MS."""
        attempt = 0
        while True:
            attempt += 1
            if await self._try_prepare(attempt):
                self._unavailable.clear()
                await self._unavailable.wait()  # a job found the engine unusable: heal again
                attempt = 0
                continue
            if self.config.model_retry_s <= 0:
                return
            log.info("model_retry_scheduled", attempt=attempt, retry_in_s=self.config.model_retry_s)
            await asyncio.sleep(self.config.model_retry_s)

    async def _try_prepare(self, attempt: int) -> bool:
        config = self.config
        try:
            if config.preload_models or config.warmup_on_start:
                load_s = self._load_s = await self.engine.load()
                self.core.model = self.engine.model
                log.info("model_loaded", model=self.engine.model, load_s=round(load_s, 3))
                if config.warmup_on_start:
                    self.core.warming()
                    self._beat_now.set()
                    warm_s = await self.engine.warm_up()
                    log.info("model_warmed_up", warm_up_s=round(warm_s, 3))
            else:
                log.info("model_load_deferred", reason="SESAME_PRELOAD_MODELS=false; loads on the first job")
            await self._apply(self.core.ready(self.clock()))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the worker stays up and says why (no crash loop)
            reason = str(exc) or type(exc).__name__
            log.error(
                "engine_unavailable",
                engine=self.engine.name,
                reason=reason,
                attempt=attempt,
                exc_info=not isinstance(exc, EngineError),
            )
            await self._apply(self.core.unavailable(reason))
            self._beat_now.set()
            return False
        log.info("worker_ready", worker_id=config.worker_id, attempt=attempt)
        self._notifier.notify("READY=1", "STATUS=ready")
        self._beat_now.set()
        return True
