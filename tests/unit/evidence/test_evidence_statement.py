"""Statements: structure, determinism, strict reading, and what a config may not hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sealtune.errors import IntegrityError, UsageError
from sealtune.evidence import _json
from sealtune.evidence.statement import (
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    StepRecord,
    build_statement,
    check_config,
    normalize_digest,
    parse_statement,
    timestamp,
)

D1, D2, D3 = "1" * 64, "2" * 64, "3" * 64


def _step(**kw: object) -> StepRecord:
    base: dict[str, object] = dict(
        name="train", kind="train", inputs={"dataset": "content-sha256:" + D1},
        outputs={"model": "sha256:" + D2},
        config={"lr": 0.01, "epochs": 1}, measurement={"digest": "sha256:" + D3},
        started_on="2026-01-02T03:04:05Z", finished_on="2026-01-02T03:05:06Z",
        byproducts=({"name": "ledger/7", "digest": {"sha256": D3}},))
    base.update(kw)
    return StepRecord(**base)  # type: ignore[arg-type]


def test_a_statement_is_in_toto_v1_with_slsa_provenance_v1() -> None:
    raw = build_statement(_step(), run_id="run-1", workspace_id="ws1")
    doc = json.loads(raw)
    assert doc["_type"] == STATEMENT_TYPE and doc["predicateType"] == PREDICATE_TYPE
    assert doc["subject"] == [{"name": "model", "digest": {"sha256": D2}}]
    build, run = doc["predicate"]["buildDefinition"], doc["predicate"]["runDetails"]
    assert build["resolvedDependencies"] == [{"name": "dataset",
                                              "digest": {"content-sha256": D1}}]
    assert build["externalParameters"] == {"lr": 0.01, "epochs": 1}
    assert build["internalParameters"] == {"sandbox": {"digest": "sha256:" + D3}}
    assert build["buildType"].endswith("/train/v1")
    assert run["metadata"] == {"invocationId": "run-1", "startedOn": "2026-01-02T03:04:05Z",
                               "finishedOn": "2026-01-02T03:05:06Z"}
    assert run["builder"]["id"].endswith("/builder/ws1")
    assert raw == _json.canonical(doc)  # canonical, hence deterministic
    assert raw == build_statement(_step(), run_id="run-1", workspace_id="ws1")


def test_parse_reads_back_what_build_wrote() -> None:
    st = parse_statement(build_statement(_step(), run_id="r", workspace_id="w"), what="s")
    assert (st.kind, st.run_id, st.inputs, st.outputs) == (
        "train", "r", {"dataset": "content-sha256:" + D1}, {"model": "sha256:" + D2})
    assert st.byproducts["ledger/7"] == {"digest": "sha256:" + D3, "annotations": {}}
    assert st.measurement == {"digest": "sha256:" + D3}


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(_type="https://in-toto.io/Statement/v0.1"),
    lambda d: d.update(predicateType="https://slsa.dev/provenance/v0.2"),
    lambda d: d["predicate"]["buildDefinition"].update(buildType="https://x/y"),
    lambda d: d["subject"].append(dict(d["subject"][0])),                   # repeated name
    lambda d: d["subject"][0]["digest"].update(sha256="A" * 64),            # upper-case hex
    lambda d: d["subject"][0]["digest"].update(sha512="0" * 128),           # two digests
    lambda d: d["subject"][0].update(digest={"md5": "0" * 32}),             # unknown alg
    lambda d: d["predicate"]["runDetails"].pop("byproducts"),
    lambda d: d["predicate"]["runDetails"]["byproducts"][0].update(annotations=[1]),
    lambda d: d["predicate"].update(extra=1),
])
def test_parse_refuses_another_structure(mutate: object) -> None:
    doc = json.loads(build_statement(_step(), run_id="r", workspace_id="w"))
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(IntegrityError):
        parse_statement(_json.canonical(doc), what="s")


def test_parse_refuses_a_non_canonical_encoding() -> None:
    doc = json.loads(build_statement(_step(), run_id="r", workspace_id="w"))
    with pytest.raises(IntegrityError, match="canonical"):
        parse_statement(json.dumps(doc).encode(), what="s")


@pytest.mark.parametrize("config", [
    {"passphrase": "x"}, {"nested": {"api_key": "x"}}, {"list": [{"Token": 1}]},
    {"kms_secret": "x"}, {"private-key": "x"}, {"pin": 1234}, {"raw": b"bytes"},
    {1: "non-string key"},
])
def test_a_config_with_a_secret_looking_field_or_non_json_is_refused(config: object) -> None:
    with pytest.raises(UsageError):
        check_config(config)


def test_ordinary_field_names_pass() -> None:
    check_config({"dropped_no_assistant_tokens": 3, "keys": ["k1"], "spin": 1, "pinned": True,
                  "tokenizer": "t", "max_length": 48, "dp": {"epsilon": 8.0}})


def test_digests_and_times_have_one_form() -> None:
    assert normalize_digest("sha256:" + D1, what="x") == normalize_digest(D1, what="x") == \
        "sha256:" + D1
    assert normalize_digest("content-sha256:" + D1, what="x") == "content-sha256:" + D1
    for bad in ("sha256:" + "A" * 64, "1" * 63, "md5:" + D1, "sha512:" + D1, ":" + D1):
        with pytest.raises(UsageError):
            normalize_digest(bad, what="x")
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"
    with pytest.raises(UsageError):
        timestamp(datetime(2026, 1, 2))  # naive: ambiguous


def test_only_a_ledger_byproduct_may_name_a_pruned_event_by_its_leaf_hash() -> None:
    pruned = {"name": "ledger/7", "digest": {"rfc6962-leaf": D3}}
    st = parse_statement(build_statement(_step(byproducts=(pruned,)), run_id="r",
                                         workspace_id="w"), what="s")
    assert st.byproducts["ledger/7"]["digest"] == "rfc6962-leaf:" + D3
    doc = json.loads(build_statement(_step(), run_id="r", workspace_id="w"))
    doc["subject"][0]["digest"] = {"rfc6962-leaf": D2}  # an output is never a leaf hash
    with pytest.raises(IntegrityError):
        parse_statement(_json.canonical(doc), what="s")
    with pytest.raises(UsageError):
        normalize_digest("rfc6962-leaf:" + D1, what="input")
