"""RFC 6962 / RFC 9162 Merkle trees: hashing, compact ranges and proofs.

Pure code: no I/O, no clock. Leaf hash ``SHA-256(0x00 || leaf)``, interior
node hash ``SHA-256(0x01 || left || right)``, the empty tree's root
``SHA-256("")``; the tree over ``n`` leaves splits at the largest power of two
smaller than ``n`` (RFC 9162 §2.1.1). A :class:`CompactRange` (the
"frontier") holds one hash per set bit of the tree size, so appending a leaf
and computing the root are both O(log n) and the state can be stored as a few
hundred bytes next to the log. Inclusion and consistency proofs are generated
from a list of leaf hashes and verified with the RFC 9162 §2.1.3.2 and
§2.1.4.2 algorithms; :func:`inclusion_proofs` proves many leaves in one pass.

What this protects against: given a trusted root (for instance from a signed
checkpoint), any change, insertion, deletion or reordering of leaves below it,
and any proof that does not match it. The 0x00/0x01 prefixes separate leaves
from interior nodes (no second-preimage trick by presenting a node as a leaf).

What it does not: it says nothing about whether a root is trustworthy (that is
the signature's job, see :mod:`sealtune.core.note`), and it cannot tell
whether the log showed the same tree to everyone (that needs witnesses or
gossip of checkpoints).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_SIZE_BYTES = 8


def leaf_hash(leaf: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || leaf)``."""
    return hashlib.sha256(_LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(size: int) -> int:
    """Largest power of two strictly smaller than ``size`` (``size >= 2``)."""
    return 1 << ((size - 1).bit_length() - 1)


class CompactRange:
    """The right frontier of a Merkle tree: one subtree hash per set size bit.

    ``hashes`` lists the roots of the perfect subtrees that make up the tree,
    left to right (largest first). Appending is amortised O(1), worst case
    O(log n); :meth:`root` is O(log n).

    Args:
        size: number of leaves the range covers.
        hashes: the subtree roots, ``size.bit_count()`` of them.

    Raises:
        ValueError: the hash count or a hash length does not match ``size``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or size >= 1 << 63:
            raise ValueError("compact range size out of range")
        if len(hashes) != size.bit_count():
            raise ValueError("compact range hash count does not match its size")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("compact range hashes must be 32 bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The perfect subtree roots, left to right."""
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        return CompactRange(self._size, self._hashes)

    def append(self, leaf_hash_: bytes) -> None:
        """Append one leaf, given by its leaf hash (not the raw leaf).

        Raises:
            ValueError: ``leaf_hash_`` is not 32 bytes.
        """
        if len(leaf_hash_) != HASH_SIZE:
            raise ValueError("leaf hash must be 32 bytes")
        hashes = self._hashes
        hashes.append(leaf_hash_)
        size = self._size
        # Each trailing 1 bit of the old size is a perfect subtree of the same
        # height as the new one to its right: merge them.
        while size & 1:
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            size >>= 1
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        """Return the RFC 6962 root hash of the leaves covered so far."""
        if not self._hashes:
            return EMPTY_ROOT
        acc = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            acc = node_hash(h, acc)
        return acc

    def to_bytes(self) -> bytes:
        """Serialise as ``uint64_be(size) || hashes`` (8 + 32 * popcount bytes)."""
        return self._size.to_bytes(_SIZE_BYTES, "big") + b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, data: bytes) -> CompactRange:
        """Parse :meth:`to_bytes` output strictly.

        Raises:
            ValueError: the encoding is truncated, padded or inconsistent.
        """
        if len(data) < _SIZE_BYTES:
            raise ValueError("compact range encoding is truncated")
        size = int.from_bytes(data[:_SIZE_BYTES], "big")
        body = data[_SIZE_BYTES:]
        if size >= 1 << 63 or len(body) != HASH_SIZE * size.bit_count():
            raise ValueError("compact range encoding has the wrong length")
        hashes = [body[i : i + HASH_SIZE] for i in range(0, len(body), HASH_SIZE)]
        return cls(size, hashes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    def __hash__(self) -> int:
        return hash((self._size, tuple(self._hashes)))

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return the RFC 6962 root of a tree given its leaf hashes, in order."""
    cr = CompactRange()
    cr.extend(leaf_hashes)
    return cr.root()


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """Return the RFC 9162 §2.1.3.1 inclusion proof for leaf ``index``.

    Args:
        leaf_hashes: all leaf hashes of the tree the proof is for (its size is
            ``len(leaf_hashes)``).
        index: zero-based leaf index.

    Raises:
        ValueError: ``index`` is outside the tree.
    """
    if not 0 <= index < len(leaf_hashes):
        raise ValueError("leaf index is outside the tree")
    proof: list[bytes] = []
    lo, hi = 0, len(leaf_hashes)
    # Walk down from the root, recording the sibling subtree at each level;
    # the proof lists them bottom-up, hence the reversal.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            proof.append(root_of(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            proof.append(root_of(leaf_hashes[lo : lo + k]))
            lo += k
    proof.reverse()
    return proof


def _audit_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[lo, hi)`` whose roots make up leaf ``index``'s audit path, bottom-up."""
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index - lo < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


@dataclass(frozen=True)
class InclusionBatch:
    """What :func:`inclusion_proofs` computed in its one pass.

    Attributes:
        root: the tree's root (check it against the signed one before use).
        proofs: leaf index -> its RFC 9162 audit path, bottom-up.
        leaf_hashes: leaf index -> its leaf hash, as read.
    """

    root: bytes
    proofs: dict[int, tuple[bytes, ...]]
    leaf_hashes: dict[int, bytes]


def inclusion_proofs(
    leaf_hashes: Iterable[bytes], size: int, indices: Iterable[int]
) -> InclusionBatch:
    """Inclusion proofs of many leaves of one tree, in one pass over its leaf hashes.

    Every sibling on an audit path is an RFC 6962 subtree: a perfect, aligned
    one (met whole while the leaves stream past), or one on the right edge,
    ``[lo, size)``, whose root folds the final compact range from ``lo``. So
    the cost is O(n + k log n) time and O(k log n) memory for ``k`` leaves of
    a tree of ``n`` (one proof at a time would be O(n) each).

    Args:
        leaf_hashes: the tree's leaf hashes in order, ``size`` of them (any iterable,
            e.g. pages read from a store).
        size: the tree size.
        indices: zero-based leaf indices to prove (repeats are ignored).

    Raises:
        ValueError: an index outside the tree, a hash that is not 32 bytes, or not
            exactly ``size`` leaf hashes.
    """
    wanted_leaves = set(indices)
    if any(not 0 <= i < size for i in wanted_leaves):
        raise ValueError("leaf index is outside the tree")
    paths = {i: _audit_ranges(i, size) for i in wanted_leaves}
    found: dict[tuple[int, int], bytes] = dict.fromkeys(
        ((lo, hi - lo) for ranges in paths.values() for lo, hi in ranges), b"")
    stack: list[tuple[int, int, bytes]] = []  # (first leaf, leaf count, root): the frontier
    seen: dict[int, bytes] = {}
    count = 0
    for h in leaf_hashes:
        if len(h) != HASH_SIZE or count >= size:
            raise ValueError("leaf hashes must be 32 bytes, exactly size of them")
        if count in wanted_leaves:
            seen[count] = h
        lo, width, node = count, 1, h
        count += 1
        while True:
            if (lo, width) in found:
                found[lo, width] = node
            if not stack or stack[-1][1] != width:
                break
            left_lo, _, left = stack.pop()
            lo, width, node = left_lo, width * 2, node_hash(left, node)
        stack.append((lo, width, node))
    if count != size:
        raise ValueError("leaf hashes must be 32 bytes, exactly size of them")
    # The frontier's suffixes are the right-edge subtrees [lo, size); the whole is the root.
    acc: bytes | None = None
    for lo, _, h in reversed(stack):
        acc = h if acc is None else node_hash(h, acc)
        if (lo, size - lo) in found:
            found[lo, size - lo] = acc
    if not all(found.values()):  # cannot happen: every audit-path node is one of the two kinds
        raise ValueError("an audit path node was not met")
    root = EMPTY_ROOT if acc is None else acc
    proofs = {i: tuple(found[lo, hi - lo] for lo, hi in ranges) for i, ranges in paths.items()}
    return InclusionBatch(root, proofs, seen)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the RFC 9162 §2.1.4.1 consistency proof from ``old_size``.

    Args:
        leaf_hashes: all leaf hashes of the newer tree (its size is the new size).
        old_size: size of the older tree, ``0 <= old_size <= len(leaf_hashes)``.

    Raises:
        ValueError: ``old_size`` is out of range.
    """
    new_size = len(leaf_hashes)
    if not 0 <= old_size <= new_size:
        raise ValueError("old size must be between 0 and the new size")
    if old_size in (0, new_size):
        return []
    return _subproof(leaf_hashes, 0, new_size, old_size, True)


def _subproof(
    leaves: Sequence[bytes], lo: int, hi: int, m: int, whole: bool
) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], whole) from RFC 9162 §2.1.4.1 (depth is O(log n))."""
    n = hi - lo
    if m == n:
        return [] if whole else [root_of(leaves[lo:hi])]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves, lo, lo + k, m, whole), root_of(leaves[lo + k : hi])]
    return [*_subproof(leaves, lo + k, hi, m - k, False), root_of(leaves[lo : lo + k])]


def verify_inclusion(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an inclusion proof with the RFC 9162 §2.1.3.2 algorithm.

    Args:
        leaf_hash_: the leaf hash (``leaf_hash(leaf)``), not the raw leaf.
        index: zero-based leaf index.
        size: tree size the proof is for.
        proof: the audit path, bottom-up.
        root: the trusted root at ``size``.

    Returns:
        True only if the proof is well formed and leads to ``root``.
    """
    if not 0 <= index < size or len(leaf_hash_) != HASH_SIZE or len(root) != HASH_SIZE:
        return False
    if any(len(p) != HASH_SIZE for p in proof):
        return False
    fn, sn, r = index, size - 1, leaf_hash_
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """Check a consistency proof with the RFC 9162 §2.1.4.2 algorithm.

    An empty old tree is consistent with any tree (the proof must be empty);
    equal sizes need equal roots and an empty proof.

    Returns:
        True only if the proof shows the old tree is a prefix of the new one.
    """
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE:
        return False
    if not 0 <= old_size <= new_size or any(len(p) != HASH_SIZE for p in proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # exact power of two
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
