from __future__ import annotations

import pytest

from shelfwise.errors import Unauthenticated
from shelfwise.identity import caller_from_claims, issue_dev_token, signing_key, verify_dev_token
from shelfwise.settings import Settings


@pytest.mark.parametrize(
    ("raw", "admin"),
    [
        ("inventory-admins", True),
        ("staff,inventory-admins", True),
        ("[staff inventory-admins]", True),
        (["inventory-admins"], True),
        ("staff", False),
        (None, False),
        ("inventory-admins-not", False),
    ],
)
def test_cognito_groups_in_every_shape_api_gateway_sends(raw: object, admin: bool) -> None:
    caller = caller_from_claims({"sub": "abc-123", "cognito:groups": raw}, "inventory-admins")
    assert caller.is_admin is admin
    assert caller.user_id == "abc-123"


def test_claims_without_a_subject_are_refused() -> None:
    with pytest.raises(Unauthenticated):
        caller_from_claims({"cognito:groups": "inventory-admins"}, "inventory-admins")


def test_dev_tokens_verify_with_the_key_that_signed_them(tmp_path) -> None:
    settings = Settings(local_signing_key_file=tmp_path / "key", auth_mode="local")
    token = issue_dev_token(settings, "alice", admin=True)
    key_file = tmp_path / "key"
    assert key_file.stat().st_mode & 0o777 == 0o600  # created private on first use
    caller = verify_dev_token(signing_key(settings), token, admin_group="inventory-admins")
    assert (caller.user_id, caller.is_admin) == ("alice", True)
    with pytest.raises(Unauthenticated):
        verify_dev_token(b"some-other-key-of-enough-length-0123456789", token, admin_group="inventory-admins")


def test_without_a_key_local_tokens_are_refused_not_crashing(tmp_path) -> None:
    settings = Settings(local_signing_key_file=tmp_path / "missing", auth_mode="local")
    with pytest.raises(Unauthenticated):
        signing_key(settings)


def test_bad_user_names_are_refused(tmp_path) -> None:
    settings = Settings(local_signing_key_file=tmp_path / "key")
    with pytest.raises(ValueError, match="user must be"):
        issue_dev_token(settings, "has spaces")
