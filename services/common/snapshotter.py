"""Snapshots serialised in a forked child, so that the processor loop does not stall on them.

``fork()`` hands the child a copy-on-write image of the parent at one instant: the state as of
the offsets just committed. The child serialises it (the core's ``snapshot()``, zlib, Avro: the
caller's ``build``) into an anonymous file and exits; the parent goes on consuming and, once the
child has exited, writes the records in its next transaction. Redis takes its BGSAVE this way.

Why: built inside the transaction, a snapshot held every order for as long as the state took to
serialise, about 4 µs per open order (58 ms at 7,476 open orders, docs/performance.md), which
set the p99 at any rate. The fork itself costs the page tables' copy (docs/performance.md).

The child touches no Kafka handle, lock or thread of the parent's, and leaves by ``os._exit`` so
that nothing of the parent's (atexit handlers, librdkafka's destructors, a test runner) runs
twice; its garbage collector is off, so that it copies no more pages than it reads.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import pickle
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger(__name__)

# A child still running after this long is taken as hung (a lock some thread of the parent held
# at the fork): it is ended, and the next snapshot due forks a new one. Serialising 7,476 open
# orders took 54 ms.
CHILD_SECONDS = 300.0


class Snapshotter:
    """At most one child at a time; `poll` hands over its result once."""

    def __init__(self) -> None:
        self._pid = 0
        self._file: IO[bytes] | None = None
        self._started = 0.0

    @property
    def busy(self) -> bool:
        return self._pid != 0

    def start(self, build: Callable[[], Any]) -> None:
        """Fork a child that pickles `build()`; the caller's state is frozen as of now."""
        assert not self.busy, "one snapshot child at a time"
        file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _collect or cancel
        self._started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 1
            try:
                gc.disable()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                pickle.dump(build(), file, protocol=pickle.HIGHEST_PROTOCOL)
                file.flush()
                code = 0
            except BaseException:  # reported, then the child ends either way
                # straight to fd 2: sys.stderr's lock may have been held by another thread
                # of the parent at the fork, and no thread is left in the child to release it
                os.write(2, traceback.format_exc().encode())
            finally:
                os._exit(code)
        self._pid, self._file = pid, file

    def poll(self) -> Any | None:
        """The child's result once it has exited, else None (None too if it failed)."""
        if not self._pid:
            return None
        pid, status = os.waitpid(self._pid, os.WNOHANG)
        if pid != 0:
            return self._collect(status)
        if time.monotonic() - self._started > CHILD_SECONDS:
            log.warning("snapshot child running for %.0f s: ended", CHILD_SECONDS)
            self.cancel()
        return None

    def wait(self, timeout: float) -> Any | None:
        """The running child's result, waiting up to `timeout` s; None if none or it failed."""
        deadline = time.monotonic() + timeout
        while self._pid and time.monotonic() < deadline:
            found = self.poll()
            if not self._pid:  # exited: its result, or None if it failed
                return found
            time.sleep(0.01)
        self.cancel()
        return None

    def cancel(self) -> None:
        """End a running child and forget it."""
        if not self._pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGKILL)
        os.waitpid(self._pid, 0)
        self._pid = 0
        if self._file is not None:
            self._file.close()
            self._file = None

    def _collect(self, status: int) -> Any | None:
        file, seconds = self._file, time.monotonic() - self._started
        self._pid, self._file = 0, None
        assert file is not None
        with file:
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                log.warning("snapshot child ended with status %d after %.3f s", code, seconds)
                return None
            file.seek(0)
            result = pickle.load(file)
        log.debug("snapshot child done in %.3f s", seconds)
        return result
