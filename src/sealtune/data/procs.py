"""Where ``--workers N`` processes come from: a fork server that imports the data stage once.

With ``spawn`` every worker is a fresh interpreter that imports the data
stage itself (numpy, phonenumbers, the recognizers' tables): about a second
of CPU each on the 2-CPU VM, four times for ``--workers 2`` (a detection and
a redaction pool), which two cores cannot hide. With ``forkserver`` one
fresh interpreter imports it once and forks every worker from itself.

The fork server is started the way ``spawn`` starts a worker (a new
interpreter: it inherits none of this process's memory, neither unwrapped
keys nor a dataset secret), and a worker's arguments (the policy; for
redaction workers the dataset's redaction secret and dictionary) go from
this process to the worker over its own pipe, never through the server.
:func:`stop` ends the server when the ingest ends, so none is left running.

What it does not change: the workers run where this process runs (the same
host, user and, when it is on, sandbox). Workers forked from one server
start from its state: the same ``random`` module state and string-hash
seed. Nothing in the data stage draws from ``random``; its secrets come
from the operating system (``secrets``).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
from multiprocessing import forkserver

__all__ = ["PRELOAD", "context", "stop"]

#: What the fork server imports before forking: every module a worker runs.
PRELOAD = ["sealtune.data.parallel", "sealtune.data.parallel_redaction"]


def context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context data-stage workers are started with."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def stop() -> None:
    """Stop this process's fork server, if one runs (its workers have exited first).

    Uses CPython's own way to stop it (``ForkServer._stop``, there for its tests):
    the server is otherwise left running until this process exits.
    """
    forkserver._forkserver._stop()  # type: ignore[attr-defined]
