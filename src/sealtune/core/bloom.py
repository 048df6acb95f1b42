"""A keyed Bloom filter of token windows: is this run of n tokens in the training set?

Built inside the training sandbox from the training set's n-token windows
and sealed with the model; the server opens it with the model and checks
every output against it (the ``regurgitation`` detector). Each window is
hashed with HMAC-SHA-256 under a random 32-byte key that travels inside the
filter file, which is sealed like the weights: without the key, the bits say
nothing about which windows are in the set, and a guessed window cannot be
tested. A Bloom filter answers "maybe" with a false-positive rate set when
it is sized (:func:`sized`) and never answers "no" for a window it holds.

The file format (``STBLOOM1``): magic, then big-endian u16 ``n`` (tokens per
window), u8 ``k`` (hashes), u64 ``m`` (bits), 32-byte key, ``ceil(m/8)``
bytes of bits. :func:`BloomFilter.from_bytes` checks every field and the
length, and is linear in the input.

Pure: no I/O, no clock. What this protects against: training text kept in
clear beside the model for the detector (it keeps keyed hashes only). What
it does not: someone holding the opened filter and its key can test guessed
windows offline, so it is sealed with the weights, which leak more.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import struct
from collections.abc import Iterable, Sequence

from sealtune.errors import IntegrityError

__all__ = ["FILE_NAME", "MAGIC", "WINDOW_TOKENS", "BloomFilter", "sized", "tokens"]

MAGIC = b"STBLOOM1"
#: The filter's file name in a model directory (sealed with the weights).
FILE_NAME = "regurgitation.bloom"
#: Tokens per window at training time (the detector's ``min_tokens`` is at least this).
WINDOW_TOKENS = 8
_HEAD = struct.Struct(">HBQ")
_TOKEN = re.compile(r"[0-9A-Za-z_]+|[^\s0-9A-Za-z_]")
_MAX_BITS = 1 << 34  # 2 GiB of bits: far above any training set sealtune tunes on


def tokens(text: str, *, limit: int = 1 << 20) -> list[str]:
    """Lower-cased tokens: runs of ASCII letters, digits and ``_``, or one other non-space char.

    The same split as the monitor's detectors (CJK text is one token per
    character), so training-time windows and served outputs line up. Linear.
    """
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        out.append(match.group().lower())
        if len(out) >= limit:
            break
    return out


def sized(items: int, *, fp_rate: float = 1e-6) -> tuple[int, int]:
    """``(m, k)``: bits and hash count for ``items`` windows at false-positive rate ``fp_rate``."""
    items = max(1, items)
    m = max(64, math.ceil(-items * math.log(fp_rate) / (math.log(2) ** 2)))
    k = max(1, min(32, round(m / items * math.log(2))))
    return m, k


class BloomFilter:
    """A keyed Bloom filter of ``n``-token windows.

    Args:
        n: tokens per window.
        m: bits.
        k: hashes per window.
        key: the 32-byte HMAC key (random when None).
        bits: the bit array (empty when None).
    """

    def __init__(self, *, n: int, m: int, k: int, key: bytes | None = None,
                 bits: bytes | None = None) -> None:
        if not (1 <= n <= 4096 and 64 <= m <= _MAX_BITS and 1 <= k <= 32):
            raise ValueError("bloom filter: n in 1..4096, m in 64..2^34, k in 1..32")
        self.n, self.m, self.k = n, m, k
        self._key = key if key is not None else os.urandom(32)
        if len(self._key) != 32:
            raise ValueError("bloom filter key must be 32 bytes")
        size = (m + 7) // 8
        self._bits = bytearray(bits) if bits is not None else bytearray(size)
        if len(self._bits) != size:
            raise ValueError("bloom filter bits do not match m")

    @classmethod
    def of_texts(cls, texts: Iterable[str], *, n: int, fp_rate: float = 1e-6) -> BloomFilter:
        """A filter of every ``n``-token window of ``texts`` (a shorter text: as a whole)."""
        runs = [tokens(t) for t in texts]
        count = sum(max(1, len(r) - n + 1) for r in runs)
        m, k = sized(count, fp_rate=fp_rate)
        bloom = cls(n=n, m=m, k=k)
        for run in runs:
            for window in bloom.windows(run):
                bloom.add(window)
        return bloom

    def windows(self, run: Sequence[str]) -> Iterable[Sequence[str]]:
        """Every ``n``-token window of ``run`` (the whole run when shorter)."""
        if len(run) <= self.n:
            return [run] if run else []
        return (run[i:i + self.n] for i in range(len(run) - self.n + 1))

    def _positions(self, window: Sequence[str]) -> list[int]:
        data = "\x1f".join(window).encode("utf-8", "surrogatepass")
        digest = hmac.new(self._key, data, hashlib.sha256).digest()
        h1, h2 = struct.unpack(">QQ", digest[:16])
        h2 |= 1
        return [(h1 + i * h2) % self.m for i in range(self.k)]

    def add(self, window: Sequence[str]) -> None:
        """Put one window in."""
        for p in self._positions(window):
            self._bits[p >> 3] |= 1 << (p & 7)

    def __contains__(self, window: object) -> bool:
        if not isinstance(window, list | tuple):
            return False
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(window))

    def hits(self, run: Sequence[str]) -> list[bool]:
        """For each window start of ``run``, whether that window is (maybe) in the filter."""
        if len(run) < self.n:
            return []
        return [list(run[i:i + self.n]) in self for i in range(len(run) - self.n + 1)]

    def to_bytes(self) -> bytes:
        """The ``STBLOOM1`` serialisation (holds the key: seal it)."""
        return MAGIC + _HEAD.pack(self.n, self.k, self.m) + self._key + bytes(self._bits)

    @classmethod
    def from_bytes(cls, data: bytes) -> BloomFilter:
        """Parse :meth:`to_bytes` output.

        Raises:
            IntegrityError: wrong magic, fields out of range, or wrong length.
        """
        head = len(MAGIC) + _HEAD.size
        if len(data) < head + 32 or not data.startswith(MAGIC):
            raise IntegrityError("regurgitation filter: not a STBLOOM1 file",
                                 hint="rebuild it by training the model again")
        n, k, m = _HEAD.unpack_from(data, len(MAGIC))
        body = data[head + 32:]
        try:
            return cls(n=n, m=m, k=k, key=data[head:head + 32], bits=body)
        except ValueError:
            raise IntegrityError("regurgitation filter: header and length disagree",
                                 hint="rebuild it by training the model again") from None
