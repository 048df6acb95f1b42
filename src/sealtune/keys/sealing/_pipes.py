"""The bounded in-memory pipes between a sealing or opening thread and its caller.

Shared by :mod:`sealtune.keys.sealing.writer` and
:mod:`sealtune.keys.sealing.reader`: plaintext passes between threads as
byte chunks through a queue of at most :data:`DEPTH` items, so at most a few
MiB of it exist at a time and none reaches a file.

What this protects against: a blocked thread when the other end goes away
(puts time out and give up once the peer thread has ended). What it does not:
the chunks are ordinary ``bytes`` in process memory, not wiped.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

#: Plaintext handed to a sealer thread at a time; at most ``DEPTH`` chunks wait.
CHUNK = 256 << 10
DEPTH = 4
#: Ends a stream in a pipe.
END = object()


class Aborted(Exception):
    """Stops a pipe thread whose other end went away."""


def put(chunks: queue.Queue[Any], item: object, worker: threading.Thread) -> None:
    """Put with back-pressure, without hanging if the worker thread has ended."""
    while True:
        try:
            chunks.put(item, timeout=0.2)
            return
        except queue.Full:
            if not worker.is_alive():
                return
