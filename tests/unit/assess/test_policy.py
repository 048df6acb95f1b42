"""The gate policy: the commented default reads back; every mistake is named at line:col."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealtune.assess.policy import default_policy_text, load_policy, parse_policy
from sealtune.assess.probes import PROBES
from sealtune.errors import ConfigError


def test_the_default_policy_reads_back_with_every_probe_and_its_defaults() -> None:
    policy = parse_policy(default_policy_text())
    assert set(policy.probes) == set(PROBES)
    for name, probe in PROBES.items():
        section = policy.probes[name]
        assert section.run == probe.default_run
        assert dict(section.settings) == {k: s.default for k, s in probe.settings.items()}
    assert policy.allows_licence("Apache-2.0") and not policy.allows_licence("apache-2.0")
    assert policy.digest.startswith("sha256:")


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, source="gate.yaml")
    return info.value.message


def _edit(old: str, new: str) -> str:
    text = default_policy_text()
    assert old in text
    return text.replace(old, new, 1)


def test_an_unknown_key_is_named_with_its_line_and_column() -> None:
    text = _edit("    unsafe_allow_pickle: false", "    allow_pickel: false")
    line = next(n for n, row in enumerate(text.splitlines(), 1) if "allow_pickel" in row)
    assert _error(text) == f"gate.yaml:{line}:5: probes.model_files.allow_pickel: unknown key"


def _without_section(name: str) -> str:
    """The default policy without ``probes.NAME`` (its line and the deeper ones after it)."""
    kept, skipping = [], False
    for line in default_policy_text().splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            skipping = line == f"  {name}:"
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n"


def test_a_missing_probe_section_is_an_error() -> None:
    assert "probes.utility: required" in _error(_without_section("utility"))


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("    unsafe_allow_pickle: false", "    unsafe_allow_pickle: 1", "must be true or false"),
    ("    max_perplexity_ratio: 1.0", "    max_perplexity_ratio: -1.0", "must be between"),
    ("    max_perplexity_ratio: 1.0", "    max_perplexity_ratio: lots", "must be a number"),
    ("    unknown_files: fail", "    unknown_files: ignore", "must be fail or warn"),
    ("    run: required", "    run: maybe", "must be required, when-available, off"),
    ("version: 1", "version: 2", "must be 1"),
    ("  - MIT", "  - MIT licence", "SPDX"),
])
def test_bad_values_are_refused(old: str, new: str, problem: str) -> None:
    assert problem in _error(_edit(old, new))


def test_an_unquoted_off_reads_as_off_and_on_is_refused() -> None:
    def offs(text: str) -> int:
        return sum(p.run == "off" for p in parse_policy(text).probes.values())

    assert offs(_edit("    run: required", "    run: off")) == offs(default_policy_text()) + 1
    assert "must be required, when-available, off" in _error(
        _edit("    run: required", "    run: on"))


def test_yaml_tricks_are_refused() -> None:
    assert "anchors and aliases" in _error(_edit("licences:", "licences: &l"))
    assert "tag" in _error(_edit("version: 1", "version: !!python/object:os.system 1"))
    assert "duplicate key" in _error(default_policy_text() + "version: 1\n")


def test_a_missing_policy_file_says_how_to_write_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_policy(tmp_path / "gate.yaml")
    assert "gate policy not found" in info.value.message
    assert "assess policy init" in (info.value.hint or "")


def test_an_integer_is_accepted_where_a_number_is_expected() -> None:
    policy = parse_policy(_edit("    max_perplexity_ratio: 1.0", "    max_perplexity_ratio: 2"))
    assert policy.probes["utility"].settings["max_perplexity_ratio"] == 2.0
