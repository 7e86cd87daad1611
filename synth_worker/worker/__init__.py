"""The worker process: the asyncio adapter around ``synth_worker.core.WorkerCore``."""
