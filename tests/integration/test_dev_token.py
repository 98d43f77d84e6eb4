"""`make dev-token`: the token it prints, decoded, carries the admin group only when ADMIN says yes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import jwt
import pytest

from shelfwise.identity import LOCAL_AUDIENCE

ROOT = Path(__file__).resolve().parents[2]
ADMIN_GROUP = "inventory-admins"


def _make_dev_token(tmp_path: Path, *assignments: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"ADMIN", "USER_ID", "MAKEFLAGS", "MAKELEVEL"}}
    env["SHELFWISE_LOCAL_SIGNING_KEY_FILE"] = str(tmp_path / "key")
    return subprocess.run(
        ["make", "-s", "dev-token", "USER_ID=ada", *assignments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _groups(tmp_path: Path, token: str) -> list[str]:
    key = (tmp_path / "key").read_bytes().strip()
    claims = jwt.decode(token, key, algorithms=["HS256"], audience=LOCAL_AUDIENCE)
    assert claims["sub"] == "ada"
    groups: list[str] = claims["cognito:groups"]
    return groups


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", "Yes"])
def test_admin_yes_mints_an_admin_token(tmp_path: Path, value: str) -> None:
    result = _make_dev_token(tmp_path, f"ADMIN={value}")
    assert result.returncode == 0, result.stderr
    assert _groups(tmp_path, result.stdout.strip()) == [ADMIN_GROUP]


@pytest.mark.parametrize("assignments", [("ADMIN=0",), ("ADMIN=false",), ("ADMIN=no",), ("ADMIN=",), ()])
def test_admin_no_or_unset_mints_a_plain_token(tmp_path: Path, assignments: tuple[str, ...]) -> None:
    result = _make_dev_token(tmp_path, *assignments)
    assert result.returncode == 0, result.stderr
    assert _groups(tmp_path, result.stdout.strip()) == []


def test_an_unknown_admin_value_is_a_clear_error_and_no_token(tmp_path: Path) -> None:
    result = _make_dev_token(tmp_path, "ADMIN=maybe")
    assert result.returncode != 0
    assert "eyJ" not in result.stdout  # no token printed
    assert "maybe" in result.stderr
    assert "1, true, yes" in result.stderr


@pytest.mark.parametrize(("args", "groups"), [(["--admin"], [ADMIN_GROUP]), (["--admin=no"], []), ([], [])])
def test_the_cli_flag_alone_still_means_admin(tmp_path: Path, monkeypatch, capsys, args, groups) -> None:
    from shelfwise import cli
    from shelfwise.settings import Settings

    monkeypatch.setattr(cli, "get_settings", lambda: Settings(local_signing_key_file=tmp_path / "key"))
    assert cli.main(["dev-token", "ada", *args]) == 0
    assert _groups(tmp_path, capsys.readouterr().out.strip()) == groups
