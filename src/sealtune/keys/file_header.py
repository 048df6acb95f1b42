"""Sealed-file header operations: rewrap and describe (format v1).

Both read (and rewrap rewrites) only the header, never the payload, so their
cost does not depend on the file size. Import them from
:mod:`sealtune.keys.files`, the public facade of the sealed-file operations.

What this protects against: a crash midway through a rewrap (the new entries
go to the inactive slot, fsynced, then the old slot is zeroed, fsynced: the
file opens at every point), and wrapping for a KEK the caller did not mean
(rewrap refuses a key the file is not wrapped under). What it does not:
revoke access from copies made before a rewrap (the data key is unchanged;
destroy the old KEK version for that), or vouch for what ``describe_file``
reports (it reads the header without any key: NOT authenticated).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sealtune.core.envelope import (
    OpenedHeader,
    SealedHeader,
    plan_rewrap,
    read_header,
    unlock_header,
    wrap_aad,
)
from sealtune.errors import IntegrityError, UsageError
from sealtune.keys._file_io import INTEGRITY_HINT, audit_failures, io_errors
from sealtune.keys.base import WrappedKey
from sealtune.keys.file_results import FileInfo, RewrapResult, key_entries, labels

if TYPE_CHECKING:
    from sealtune.keys.service import KeyService


def _new_entries(
    opened: OpenedHeader,
    keys: KeyService,
    key_name: str,
    add: Sequence[str],
    remove: Sequence[str],
) -> list[WrappedKey]:
    uri = keys.info(key_name).uri
    current = list(opened.slot.entries)
    if all(e.kek_uri != uri for e in current):
        raise UsageError(
            f"the file is not wrapped under {uri}",
            hint="describe it to see which keys it is wrapped for",
        )
    drop = {keys.info(name).uri for name in remove}
    if uri in drop:
        raise UsageError(f"cannot both rewrap and remove {uri}")
    aad = wrap_aad(opened.prefix)
    data_key = opened.data_key
    new: list[WrappedKey] = []
    for entry in current:
        if entry.kek_uri == uri and all(n.kek_uri != uri for n in new):
            new.append(keys.wrap(key_name, data_key, aad=aad))
        elif entry.kek_uri != uri and entry.kek_uri not in drop:
            new.append(entry)
    for name in add:
        if keys.info(name).uri in {e.kek_uri for e in new}:
            raise UsageError(f"the file is already wrapped under key {name!r}")
        new.append(keys.wrap(name, data_key, aad=aad))
    return new


def _rewrite_header(
    path: Path,
    keys: KeyService,
    key_name: str,
    add: Sequence[str],
    remove: Sequence[str],
) -> tuple[OpenedHeader, list[WrappedKey]]:
    """Write the new entries to the inactive slot, then zero the old one, fsyncing each."""
    with io_errors(path), path.open("r+b", buffering=0) as f:
        opened = unlock_header(read_header(f), unwrap=keys.unwrap_if_held)
        new = _new_entries(opened, keys, key_name, add, remove)
        for offset, data in plan_rewrap(opened, new):
            if os.pwrite(f.fileno(), data, offset) != len(data):
                raise OSError(f"short write to {path}")
            os.fsync(f.fileno())
    return opened, new


def rewrap_file(
    path: Path,
    *,
    keys: KeyService,
    key_name: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> RewrapResult:
    """Re-wrap the data key under the current version of ``key_name``, in place.

    Only the header is read and written, never the payload: the cost does
    not depend on the file size. The new entries go to the inactive slot
    (written and fsynced), then the old slot is zeroed (fsynced); a crash at
    any point leaves a file that opens.

    Args:
        path: the sealed file.
        keys: the workspace's key service.
        key_name: the KEK whose entry is replaced by a wrap under its current version.
        add: further KEKs to wrap the data key under.
        remove: KEKs whose entries are dropped.

    Raises:
        IntegrityError: the header does not authenticate.
        UsageError: the file is not wrapped under ``key_name``, or the new
            entries do not fit in a slot.
        KeyringError: see :func:`open_file`.
    """
    with audit_failures(keys, "file.rewrap", str(path)):
        opened, new = _rewrite_header(path, keys, key_name, add, remove)
    result = RewrapResult(
        path,
        opened.prefix.file_id.hex(),
        opened.slot.generation + 1,
        key_entries(opened.slot.entries),
        key_entries(new),
        opened.warning is not None,
    )
    keys.audit(
        "file.rewrap",
        str(path),
        details={
            "file_id": result.file_id,
            "generation": result.generation,
            "before": labels(result.before),
            "after": labels(result.after),
            "repaired": result.repaired,
        },
    )
    return result


def describe_file(path: Path) -> FileInfo:
    """Read a sealed file's header facts without any key.

    Nothing here is authenticated (that needs the data key): use it to see
    which keys a file needs, not as evidence.

    Raises:
        IntegrityError: the file is not a well-formed sealtune v1 file.
    """
    try:
        with io_errors(path), path.open("rb") as f:
            header: SealedHeader = read_header(f)
            size = os.fstat(f.fileno()).st_size
    except IntegrityError:
        raise IntegrityError(
            f"{path} is not a well-formed sealtune v1 file", hint=INTEGRITY_HINT
        ) from None
    prefix = header.prefix
    found = header.by_generation()
    slot = found[0][1] if found else None
    stream = prefix.suite.stream(prefix.segment_size)
    return FileInfo(
        path,
        prefix.file_id.hex(),
        prefix.suite.algorithm,
        prefix.suite.title,
        size,
        stream.plaintext_size(size - prefix.payload_offset),
        prefix.segment_size,
        prefix.slot_size,
        slot.generation if slot else 0,
        key_entries(slot.entries) if slot else (),
    )
