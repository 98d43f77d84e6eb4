"""`make run`'s settings: yes/no values read strictly, the database chosen with a reason said."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local import run
from infra.local.dynamodb_local import DynamoDBLocalError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("YES", True), ("0", False), ("false", False), ("no", False), ("", False)],
)
def test_yes_no_values(value: str, expected: bool) -> None:
    assert run.flag({"FRESH": value}, "FRESH") is expected
    assert run.flag({}, "FRESH") is False


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_yes_no_value_that_is_neither_is_refused_before_anything_starts(
    value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run.main({"FRESH": value, "SHELFWISE_LOCAL_DATA": str(tmp_path)}) == 1
    said = capsys.readouterr().out.strip().splitlines()
    assert said == [f"shelfwise | FRESH={value!r}: say 1 (or true/yes) or 0 (or false/no)"]
    assert not any(tmp_path.iterdir())


def test_lambda_mode_uses_the_ports_the_env_file_names() -> None:
    options = run.Options.from_env({"LAMBDA": "1"})
    assert (options.db_port, options.offline_port) == (run.LAMBDA_DB_PORT, run.LAMBDA_OFFLINE_PORT)
    assert (run.Options.from_env({}).db_port, run.Options.from_env({}).offline_port) == (0, 0)


def test_without_dynamodb_local_the_stack_falls_back_to_moto_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def missing() -> Path:
        raise DynamoDBLocalError("not installed")

    monkeypatch.setattr("infra.local.dynamodb_local.find_jar", missing)
    db = run.start_database(run.Options.from_env({"SHELFWISE_LOCAL_DATA": str(tmp_path)}), ("127.0.0.1",))
    try:
        assert db.kind == "moto"
        out = capsys.readouterr().out
        assert "DynamoDB Local is not installed" in out
        assert "moto" in out
    finally:
        db.stop()
