"""Content-addressed sealed blobs with wrap generations, on a write-once BlobStore.

A sealed file is named by its content digest (the SHA-256 of its prefix and
payload, :mod:`sealtune.keys.content`), which a key rotation's re-wrap never
changes, but the re-wrap does change its bytes (the key slots), and a blob
store is write-once. :class:`ContentBlobs` therefore keeps each content
digest as one or more **generations**, ``<area>/content-sha256/<hex>/gN``:
the first write is ``g1``; a rotation adds the re-wrapped copy as the next
generation (:meth:`ContentBlobs.add_generation`, never overwriting); a
reader takes the newest generation that its check accepts
(:meth:`ContentBlobs.read`), so a planted or stale newer generation (e.g. a
copy wrapped under a retired version) falls back to an older one instead of
failing; and a retirement deletes the generations below the newest
(:meth:`ContentBlobs.prune`), keeping what Object Lock refuses to delete.

The model registry keeps its sealed version files this way when the
workspace's storage is remote (:mod:`sealtune.registry.remote_store`).

What this protects against: a rotation that would need to overwrite a
write-once object; two rotations racing for one generation number (the store
refuses the second write, which takes the next number); a reader trusting
bytes its check rejects. What it does not: check anything itself: the
content digest and the sealing AEAD are checked by the caller's ``check``
(storage cannot open sealed files); generations the store refuses to delete
stay, wrapped under whatever version wrapped them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sealtune.errors import BlobExistsError, IntegrityError, PolicyViolation, StorageError
from sealtune.storage.base import BlobStore, check_key

__all__ = ["ContentBlobs"]

_HEX = re.compile(r"^[0-9a-f]{64}$")
#: How many times a generation write retries after losing a race for its number.
_RACES = 8
Check = Callable[[bytes], bool]


class ContentBlobs:
    """Sealed blobs named by content digest, each kept as write-once generations.

    Args:
        blobs: the store.
        area: the key prefix (e.g. ``registry``).
    """

    def __init__(self, blobs: BlobStore, *, area: str) -> None:
        self.blobs = blobs
        self.area = check_key(area, what="area")

    def _dir(self, hexd: str) -> str:
        if not _HEX.match(hexd):
            raise IntegrityError(f"{hexd!r} is not a content digest (64 lowercase hex digits)")
        return f"{self.area}/content-sha256/{hexd}/"

    def generations(self, hexd: str) -> list[int]:
        """The generations stored for ``hexd``, oldest first (names not ``gN`` ignored)."""
        prefix = self._dir(hexd)
        found = []
        for key in self.blobs.list(prefix):
            rest = key[len(prefix):]
            if rest[:1] == "g" and rest[1:].isdigit() and rest[1:2] != "0":
                found.append(int(rest[1:]))
        return sorted(found)

    def put(self, hexd: str, data: bytes) -> int:
        """Store ``data`` as generation 1 unless ``hexd`` is already stored; its generation.

        A content digest already stored is not written again: its generations
        hold the same content (the caller's check on reading says so).
        """
        existing = self.generations(hexd)
        if existing:
            return existing[-1]
        return self.add_generation(hexd, data)

    def add_generation(self, hexd: str, data: bytes) -> int:
        """Write ``data`` (a re-wrapped copy) as the next generation; returns its number.

        Raises:
            StorageError: the number was taken by racing writers too many times.
        """
        for _ in range(_RACES):
            number = max(self.generations(hexd), default=0) + 1
            try:
                self.blobs.put_if_absent(f"{self._dir(hexd)}g{number}", data)
            except BlobExistsError:
                continue  # another writer took that number: take the next
            return number
        raise StorageError(f"content-sha256:{hexd}: lost {_RACES} races for a generation",
                           hint="too many concurrent rotations; retry")

    def read(self, hexd: str, *, check: Check) -> tuple[int, bytes]:
        """The newest generation of ``hexd`` that ``check`` accepts, and its number.

        Raises:
            IntegrityError: none stored, or ``check`` rejects every generation (naming them).
        """
        numbers = self.generations(hexd)
        for number in reversed(numbers):
            try:
                data = self.blobs.get(f"{self._dir(hexd)}g{number}")
            except StorageError:
                continue  # deleted since it was listed
            if check(data):
                return number, data
        what = (f"generations {', '.join(f'g{n}' for n in numbers)} all fail their check"
                if numbers else "is missing")
        raise IntegrityError(f"{self.blobs.url}: content-sha256:{hexd} {what}",
                             hint="restore the store from a trusted copy")

    def prune(self, hexd: str, *, keep: int) -> list[str]:
        """Delete every generation of ``hexd`` other than ``keep``; the keys the store keeps.

        Raises:
            IntegrityError: generation ``keep`` does not exist (nothing deleted).
        """
        numbers = self.generations(hexd)
        if keep not in numbers:
            raise IntegrityError(f"content-sha256:{hexd} has no generation g{keep}",
                                 hint="prune only to a generation that is stored")
        kept = []
        for number in numbers:
            if number == keep:
                continue
            key = f"{self._dir(hexd)}g{number}"
            try:
                self.blobs.delete(key)
            except PolicyViolation:
                kept.append(key)
        return kept
