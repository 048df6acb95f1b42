"""RFC 6962 / RFC 9162 Merkle tree: known answers and properties.

Vectors: the 8-leaf test tree of the Certificate Transparency reference
implementations, as published in transparency-dev/merkle ``testonly``
(constants.go: LeafInputs, RootHashes, NodeHashes, CompactTrees;
reference_test.go: TestRefInclusionProof, TestRefConsistencyProof).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealtune.core.hashchain import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
NODES = [[bytes.fromhex(h) for h in level] for level in (
    ("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
     "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
     "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
     "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
     "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
     "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
     "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
     "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
     "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
     "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
     "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
     "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",),
)]
HASHES = [leaf_hash(x) for x in LEAVES]


def hx(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


INCLUSION = [
    (0, 1, []),
    (0, 2, hx("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7")),
    (1, 2, hx("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")),
    (2, 3, hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (1, 5, hx("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (0, 8, hx("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (5, 8, hx("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, hx("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
              "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")),
    (2, 5, hx("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
              "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")),
    (6, 8, hx("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
              "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
              "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")),
]


def ref_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH straight from the definition (recursive)."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(ref_root(hashes[:k]), ref_root(hashes[k:]))


# -- known answers -------------------------------------------------------------


def test_empty_root_and_hash_prefixes() -> None:
    assert EMPTY_ROOT == ROOTS[0] == root_of([])
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(HASHES[0], HASHES[1]) == ROOTS[2]


@pytest.mark.parametrize("size", range(9))
def test_roots_of_the_ct_test_tree(size: int) -> None:
    assert root_of(HASHES[:size]) == ROOTS[size]
    cr = CompactRange()
    cr.extend(HASHES[:size])
    assert cr.root() == ROOTS[size]


def test_node_hashes_of_the_ct_test_tree() -> None:
    assert NODES[0] == HASHES
    for level in range(1, 4):
        width = 1 << level
        for i, want in enumerate(NODES[level]):
            assert root_of(HASHES[i * width : (i + 1) * width]) == want


@pytest.mark.parametrize("size", range(9))
def test_compact_range_matches_published_compact_trees(size: int) -> None:
    n = NODES
    compact = [
        [], [n[0][0]], [n[1][0]], [n[1][0], n[0][2]], [n[2][0]], [n[2][0], n[0][4]],
        [n[2][0], n[1][2]], [n[2][0], n[1][2], n[0][6]], [n[3][0]],
    ]
    cr = CompactRange()
    cr.extend(HASHES[:size])
    assert list(cr.hashes) == compact[size]
    assert CompactRange.from_bytes(cr.to_bytes()) == cr


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION)
def test_inclusion_proof_vectors(index: int, size: int, want: list[bytes]) -> None:
    assert inclusion_proof(HASHES[:size], index) == want
    assert verify_inclusion(HASHES[index], index, size, want, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "want"), CONSISTENCY)
def test_consistency_proof_vectors(old: int, new: int, want: list[bytes]) -> None:
    assert consistency_proof(HASHES[:new], old) == want
    assert verify_consistency(old, new, want, ROOTS[old], ROOTS[new])


def test_consistency_edge_cases() -> None:
    assert verify_consistency(0, 5, [], ROOTS[0], ROOTS[5])
    assert not verify_consistency(0, 5, [ROOTS[1]], ROOTS[0], ROOTS[5])
    assert verify_consistency(5, 5, [], ROOTS[5], ROOTS[5])
    assert not verify_consistency(5, 5, [], ROOTS[5], ROOTS[4])
    assert not verify_consistency(6, 5, [], ROOTS[6], ROOTS[5])
    assert not verify_consistency(2, 5, [], ROOTS[2], ROOTS[5])
    assert not verify_consistency(6, 8, CONSISTENCY[3][2], ROOTS[5], ROOTS[8])


def test_inclusion_rejects_bad_arguments() -> None:
    proof = INCLUSION[6][2]
    assert not verify_inclusion(HASHES[5], 8, 8, proof, ROOTS[8])
    assert not verify_inclusion(HASHES[5], -1, 8, proof, ROOTS[8])
    assert not verify_inclusion(HASHES[5][:31], 5, 8, proof, ROOTS[8])
    assert not verify_inclusion(HASHES[5], 5, 8, [*proof[:2], proof[2][:31]], ROOTS[8])
    with pytest.raises(ValueError):
        inclusion_proof(HASHES, 8)
    with pytest.raises(ValueError):
        consistency_proof(HASHES[:4], 5)


def test_compact_range_encoding_is_strict() -> None:
    cr = CompactRange()
    cr.extend(HASHES[:7])
    data = cr.to_bytes()
    assert len(data) == 8 + 3 * 32
    for bad in (data[:-1], data + b"\0", data[:7], (8).to_bytes(8, "big") + data[8:]):
        with pytest.raises(ValueError):
            CompactRange.from_bytes(bad)
    with pytest.raises(ValueError):
        CompactRange(3, [HASHES[0]])
    with pytest.raises(ValueError):
        cr.append(b"short")


# -- properties ----------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=70)


def _tree(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@given(st.lists(st.binary(max_size=8), max_size=80))
def test_root_matches_the_recursive_definition(leaves: list[bytes]) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    assert root_of(hashes) == ref_root(hashes)


@given(sizes, st.data())
def test_every_inclusion_proof_verifies(n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(hashes, i)
    assert verify_inclusion(hashes[i], i, n, proof, ref_root(hashes))


@given(sizes, st.data())
def test_any_altered_inclusion_proof_fails(n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    root = root_of(hashes)
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(hashes, i)
    assert not verify_inclusion(leaf_hash(b"other"), i, n, proof, root)
    assert not verify_inclusion(hashes[i], i, n, proof, leaf_hash(b"other"))
    assert not verify_inclusion(hashes[i], i, n, [*proof, hashes[0]], root)
    if n > 1:
        j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
        assert not verify_inclusion(hashes[i], j, n, proof, root)
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = bytearray(proof[k])
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verify_inclusion(hashes[i], i, n, [*proof[:k], bytes(flipped), *proof[k + 1:]],
                                    root)
        assert not verify_inclusion(hashes[i], i, n, proof[:-1], root)


@given(sizes, st.data())
def test_every_consistency_proof_verifies(n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    m = data.draw(st.integers(0, n))
    proof = consistency_proof(hashes, m)
    assert verify_consistency(m, n, proof, ref_root(hashes[:m]), ref_root(hashes))


@given(st.integers(2, 70), st.data())
def test_any_altered_consistency_proof_fails(n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    m = data.draw(st.integers(1, n - 1))
    proof = consistency_proof(hashes, m)
    old, new = root_of(hashes[:m]), root_of(hashes)
    k = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    flipped = bytearray(proof[k])
    flipped[bit // 8] ^= 1 << (bit % 8)
    assert not verify_consistency(m, n, [*proof[:k], bytes(flipped), *proof[k + 1:]], old, new)
    assert not verify_consistency(m, n, proof[:-1], old, new)
    assert not verify_consistency(m, n, [*proof, hashes[0]], old, new)
    assert not verify_consistency(m, n, proof, leaf_hash(b"x"), new)
    assert not verify_consistency(m, n, proof, old, leaf_hash(b"x"))
    # A different, diverging history of the same sizes is not consistent.
    forked = [*hashes[: m - 1], leaf_hash(b"forged"), *hashes[m:]]
    assert not verify_consistency(m, n, proof, root_of(forked[:m]), new)


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=4), max_size=64))
def test_compact_range_round_trips_at_every_size(leaves: list[bytes]) -> None:
    cr = CompactRange()
    for x in leaves:
        restored = CompactRange.from_bytes(cr.to_bytes())
        assert restored == cr and restored.root() == cr.root()
        cr.append(leaf_hash(x))
    assert cr.size == len(leaves)


@given(st.integers(0, 300), st.data())
def test_batched_inclusion_proofs_equal_one_at_a_time_and_verify(
        n: int, data: st.DataObject) -> None:
    hashes = _tree(n)
    indices = data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=20)) if n else []
    batch = inclusion_proofs(iter(hashes), n, indices)  # an iterator: one pass, no len()
    assert batch.root == ref_root(hashes)
    assert set(batch.proofs) == set(indices) and set(batch.leaf_hashes) == set(indices)
    for i in indices:
        assert list(batch.proofs[i]) == inclusion_proof(hashes, i)
        assert batch.leaf_hashes[i] == hashes[i]
        assert verify_inclusion(hashes[i], i, n, batch.proofs[i], batch.root)


def test_batched_inclusion_proofs_of_every_leaf_of_small_trees() -> None:
    for n in range(1, 70):
        hashes = _tree(n)
        batch = inclusion_proofs(hashes, n, range(n))
        assert all(list(batch.proofs[i]) == inclusion_proof(hashes, i) for i in range(n))


def test_batched_inclusion_proofs_read_the_leaves_once_and_refuse_bad_input() -> None:
    hashes = _tree(1000)
    reads = 0

    def stream() -> Iterator[bytes]:
        nonlocal reads
        for h in hashes:
            reads += 1
            yield h

    batch = inclusion_proofs(stream(), 1000, range(0, 1000, 7))
    assert reads == 1000 and len(batch.proofs) == 143
    with pytest.raises(ValueError):
        inclusion_proofs(hashes, 1000, [1000])
    with pytest.raises(ValueError):
        inclusion_proofs(hashes[:-1], 1000, [0])  # too few
    with pytest.raises(ValueError):
        inclusion_proofs(hashes, 999, [0])  # too many
    with pytest.raises(ValueError):
        inclusion_proofs([*hashes[:-1], b"short"], 1000, [0])
