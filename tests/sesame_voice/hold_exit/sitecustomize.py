"""A worker whose exit is held: loaded by every Python started with this folder on PYTHONPATH
(``tests/sesame_voice/test_reload_held_worker.py``).

In a ``sesame-voice worker`` process with SESAME_TEST_HOLD_EXIT=1 it registers an exit handler
that blocks for ever on an event nobody sets: the worker drains, says ``worker_stopped`` and then
never exits, as a library's own exit handler joining a thread that never ends would hold it. Only
SIGKILL ends it. With SESAME_TEST_HOLD_EXIT=thread it starts a thread (not a daemon) that waits
for ever, which the interpreter joins at exit (``tests/synth_worker/test_worker_exit.py``: the
worker must not wait on it). Nothing here changes the worker's code; the gateway and the broker
are left alone.
"""

import atexit
import os
import sys
import threading

HOLD = os.environ.get("SESAME_TEST_HOLD_EXIT") if sys.argv[-1:] == ["worker"] else None
if HOLD == "1":
    atexit.register(threading.Event().wait)
elif HOLD == "thread":
    threading.Thread(target=threading.Event().wait, name="held-by-test", daemon=False).start()
