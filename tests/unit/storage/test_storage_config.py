"""``[storage]`` in config.toml: round trip, and URLs that must never be accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealtune.config import StorageConfig, WorkspaceConfig, load_config
from sealtune.errors import ConfigError
from sealtune.storage import redact_url
from sealtune.storage.postgresql import split_url


def _write(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('format = 1\n[workspace]\nid = "w"\ncreated = "c"\n' + storage)
    return path


def test_storage_round_trips_and_defaults_stay_out_of_the_file(tmp_path: Path) -> None:
    plain = WorkspaceConfig(workspace_id="w", created="c")
    assert "[storage]" not in plain.to_toml()
    remote = WorkspaceConfig(workspace_id="w", created="c", storage=StorageConfig(
        blobs="s3://bucket/team", meta="postgresql://app@db/sealtune?schema=team"))
    path = tmp_path / "config.toml"
    path.write_text(remote.to_toml())
    assert load_config(path).storage == remote.storage


@pytest.mark.parametrize("meta", ["postgresql://app:hunter2-secret@db/x",
                                  "postgresql://app@db/x?password=hunter2-secret"])
def test_a_password_in_the_config_file_is_refused_and_not_echoed(
        tmp_path: Path, meta: str) -> None:
    path = _write(tmp_path, f'[storage]\nmeta = "{meta}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "storage.meta carries a password" in info.value.message
    assert "PGPASSWORD" in (info.value.hint or "")
    assert "hunter2-secret" not in info.value.diagnostics()


@pytest.mark.parametrize(("table", "field"), [('blobs = "ftp://x/y"', "storage.blobs"),
                                              ('meta = "s3://bucket"', "storage.meta"),
                                              ('meta = "mysql://db"', "storage.meta")])
def test_unknown_schemes_are_refused(tmp_path: Path, table: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(_write(tmp_path, f"[storage]\n{table}\n"))


def test_unknown_storage_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a known setting"):
        load_config(_write(tmp_path, '[storage]\nledger = "x"\n'))


@pytest.mark.parametrize("schema", ["Bad", "a;drop", "x" * 64, "1abc", 'q"uote'])
def test_schema_names_are_checked(schema: str) -> None:
    with pytest.raises(ConfigError, match="schema"):
        split_url(f"postgresql://app@db/x?schema={schema}")


def test_split_url_keeps_libpq_parameters_and_drops_schema() -> None:
    conninfo, schema = split_url("postgresql://app@/db?host=/run/pg&port=5433&schema=team_a")
    assert schema == "team_a" and "schema" not in conninfo
    assert "host=%2Frun%2Fpg" in conninfo and "port=5433" in conninfo


def test_redact_url_hides_passwords() -> None:
    assert redact_url("postgresql://u:pw123@h/db") == "postgresql://u:***@h/db"
    assert redact_url("s3://bucket/p") == "s3://bucket/p"
