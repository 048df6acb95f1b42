"""A misbehaving training entry, for the tests: the real worker, then stray outputs.

Runs in the sandbox in place of :mod:`sealtune.train.worker` (a test points
the job runner's ``WORKER`` here): it trains and seals as the worker does,
then leaves a plaintext file, a symlink under a checkpoint's name, an
unexpected directory and a FIFO in the output directory. The job must
remove them, name them in the audit log (``sandbox.unexpected_outputs``)
and refuse to install the model.

Not for production use: it deliberately breaks the output contract.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sealtune.train import worker

if TYPE_CHECKING:
    from sealtune.sandbox.launcher import ChildContext


def main(ctx: ChildContext, argv: list[str]) -> None:
    """The real worker, then stray entries in the output directory (a misbehaving job)."""
    worker.main(ctx, argv)
    (ctx.outdir / "stray.txt").write_text("not a sealed output\n")
    (ctx.outdir / "model" / "notes.txt").write_text("plaintext notes\n")
    (ctx.outdir / "checkpoints" / "ckpt-0000009999.sealed").symlink_to("/etc/hostname")
    (ctx.outdir / "extra" / "deeper").mkdir(parents=True)
    (ctx.outdir / "extra" / "deeper" / "x.sealed").write_bytes(b"SEALTUNE")
    os.mkfifo(ctx.outdir / "model" / "pipe.sealed")
