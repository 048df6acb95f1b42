"""Out-of-space errors that name the file being written.

A write through a file object raises ``OSError`` with no file name; callers
wrap their writes in :func:`writing` so that running out of space (``ENOSPC``,
``EDQUOT``, or the file size limit ``EFBIG``) is reported as
``error: <path>: No space left on device`` naming the file being written,
never the source being read. What this does not do: free space, or keep a
partial output (the atomic writers remove theirs).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

from sealtune.errors import DiskFullError

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def disk_full(exc: BaseException, path: object) -> DiskFullError | None:
    """A :class:`DiskFullError` naming ``path`` if ``exc`` means out of space, else None."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return DiskFullError(path, os.strerror(exc.errno))
    return None


@contextmanager
def writing(path: object) -> Iterator[None]:
    """Report running out of space inside the block as ``error: <path>: No space left...``."""
    try:
        yield
    except OSError as exc:
        full = disk_full(exc, path)
        if full is None:
            raise
        raise full from None
