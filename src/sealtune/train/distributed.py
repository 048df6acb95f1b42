"""Multi-process data-parallel training inside one sandbox (``--nproc N``, gloo on CPU).

Rank 0 is the sandbox's entry process (:mod:`sealtune.train.worker`). It opens
a ``torch.distributed`` :class:`TCPStore` on the loopback interface (the only
interface the sandbox's network namespace has), then starts ranks 1..N-1 as
``python -I -B -m sealtune.train.distributed --rank R ...``. It follows
torchrun's contract (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``
in the environment; ``env://``-style rendezvous) but is not torchrun: torchrun's
agent closes every inherited descriptor, and the data keys must reach each rank
over an inherited pipe, never an environment variable or a file. So each
child gets its own pipe (``--keys-fd``), which rank 0 fills with the framed dataset
and checkpoint keys (:func:`~sealtune.sandbox.wire.encode_secrets`; never
the output key, which only rank 0 uses) and closes.

Every rank decrypts the dataset in its own memory and trains on its shard of
each logical batch; the gradients are summed with one ``all_reduce`` per step
(:meth:`DistContext.all_reduce_grads`), so every rank takes the same optimizer
step and the weights stay identical (the same global batches as one process,
up to floating-point summation order). Only rank 0 sends events, writes
checkpoints and seals outputs; the children report nothing but their exit
status (their stdout and stderr are ``/dev/null``, inherited from the launcher).

What this protects against: keys in the environment, in files or in a child's
argv; children outliving rank 0 (``PR_SET_PDEATHSIG``); a failed rank leaving
the others blocked in a collective (rank 0 watches its children and fails
the job). What it does not: anything across machines — the sandbox's network
namespace has no external interface, so multi-node training is not
implemented (see ``docs/training.md``); differential privacy with N > 1 is
refused (Opacus's distributed Poisson sampling is not wired in).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sealtune.errors import SealtuneError

__all__ = ["DistContext", "RankFailedError", "RankGroup", "start_ranks"]

LOOPBACK = "127.0.0.1"
BACKEND = "gloo"
MAX_NPROC = 64
#: How long a rank waits for the others at the rendezvous and in a collective.
TIMEOUT_S = 600


class RankFailedError(SealtuneError):
    """A training rank (a child process inside the sandbox) exited with an error."""

    prefix = "train"


@dataclass
class DistContext:
    """This process's place in the process group (``world_size`` 1: no group at all)."""

    rank: int = 0
    world_size: int = 1
    store: Any = None
    initialised: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0: the only rank that reports, checkpoints and writes outputs."""
        return self.rank == 0

    def init(self) -> None:
        """Join the gloo process group through the store."""
        import datetime

        import torch.distributed as dist

        dist.init_process_group(BACKEND, store=self.store, rank=self.rank,
                                world_size=self.world_size,
                                timeout=datetime.timedelta(seconds=TIMEOUT_S))
        self.initialised = True

    def shard(self, indices: Sequence[int]) -> list[int]:
        """This rank's part of a logical batch (round robin)."""
        return list(indices[self.rank::self.world_size])

    def all_reduce_grads(self, params: Sequence[Any]) -> None:
        """Sum the gradients of ``params`` over all ranks (missing ones count as zero)."""
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n

    def sum(self, value: float) -> float:
        """The sum of ``value`` over all ranks."""
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def broadcast_params(self, params: Sequence[Any]) -> None:
        """Make every rank start from rank 0's weights (as DDP does at construction)."""
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    def close(self) -> None:
        if self.initialised:
            import torch.distributed as dist

            with contextlib.suppress(Exception):
                dist.destroy_process_group()
            self.initialised = False


@dataclass
class RankGroup:
    """Rank 0's handle on its children: started, watched, waited for."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    failed: int | None = None

    def watch(self, on_failure: Any) -> None:
        """Call ``on_failure(rank)`` (from a thread) as soon as a child exits non-zero."""
        def loop() -> None:
            while True:
                alive = False
                for rank, proc in enumerate(self.procs, start=1):
                    code = proc.poll()
                    if code is None:
                        alive = True
                    elif code != 0 and self.failed is None:
                        self.failed = rank
                        on_failure(rank)
                        return
                if not alive:
                    return
                time.sleep(0.2)

        threading.Thread(target=loop, daemon=True, name="rank-watch").start()

    def wait(self, timeout: float = TIMEOUT_S) -> None:
        """Wait for every child; raise :class:`RankFailedError` if one failed."""
        deadline = time.monotonic() + timeout
        for rank, proc in enumerate(self.procs, start=1):
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
            if code != 0:
                raise RankFailedError(f"training rank {rank} exited with status {code}",
                                      hint="rerun with --nproc 1 to see the error class")

    def kill(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)


def start_ranks(world_size: int, keys: dict[str, bytearray],
                worker_args: Sequence[str]) -> tuple[DistContext, RankGroup]:
    """Rank 0: open the store on loopback and start ranks 1..N-1, keys over pipes.

    Returns:
        rank 0's context (not yet initialised: call :meth:`DistContext.init`) and the
        children's group.
    """
    from torch.distributed import TCPStore  # type: ignore[attr-defined]

    from sealtune.sandbox.wire import encode_secrets

    store = TCPStore(LOOPBACK, 0, world_size, is_master=True,
                     timeout=_timedelta(TIMEOUT_S), wait_for_workers=False)
    group = RankGroup()
    env = {**os.environ, "MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(store.port),
           "WORLD_SIZE": str(world_size)}
    frame = encode_secrets(keys)
    try:
        for rank in range(1, world_size):
            read_fd, write_fd = os.pipe()
            try:
                argv = [sys.executable, "-I", "-B", "-m", "sealtune.train.distributed",
                        "--rank", str(rank), "--world-size", str(world_size),
                        "--port", str(store.port), "--keys-fd", str(read_fd),
                        "--parent", str(os.getpid()), "--",
                        *worker_args]
                group.procs.append(subprocess.Popen(
                    argv, pass_fds=(read_fd,), env={**env, "RANK": str(rank)},
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL))
            finally:
                os.close(read_fd)
            with os.fdopen(write_fd, "wb") as fh:  # a few keys: far below the pipe buffer
                fh.write(frame)
    except BaseException:
        group.kill()
        raise
    finally:
        frame[:] = bytes(len(frame))
    return DistContext(0, world_size, store), group


def _timedelta(seconds: float) -> Any:
    import datetime

    return datetime.timedelta(seconds=seconds)


def _harden_child(parent: int) -> None:
    """Core size 0, not dumpable (``execve`` reset it), killed when rank 0 dies."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0
    libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL
    # Rank 0 died before the line above (we were re-parented). Rank 0 is often the
    # pid namespace's init (PID 1), so compare with its pid rather than with 1.
    if os.getppid() != parent:
        os._exit(1)


def child_main(argv: list[str] | None = None) -> int:
    """Entry of ranks 1..N-1: read the keys, join the group, train; report by exit status."""
    parser = argparse.ArgumentParser(prog="sealtune-rank", add_help=False)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world-size", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sys.excepthook = lambda *_: None  # stderr is /dev/null anyway; print nothing, ever
    _harden_child(opts.parent)
    from sealtune.sandbox.launcher import ChildContext
    from sealtune.sandbox.wire import EventWriter, read_secrets

    keys = read_secrets(opts.keys_fd)
    null = os.open(os.devnull, os.O_WRONLY)
    ctx = ChildContext(events=EventWriter(null), keys=keys)
    try:
        from torch.distributed import TCPStore  # type: ignore[attr-defined]

        from sealtune.train import worker

        store = TCPStore(LOOPBACK, opts.port, opts.world_size, is_master=False,
                         timeout=_timedelta(TIMEOUT_S))
        args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
        worker.run_rank(ctx, args, DistContext(opts.rank, opts.world_size, store))
    except BaseException:
        return 1
    finally:
        ctx.wipe_keys()
    return 0


if __name__ == "__main__":
    code = child_main()
    os._exit(code)  # skip torch's interpreter teardown, as the launcher does
