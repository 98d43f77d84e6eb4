"""Who is calling: Cognito claims on AWS, locally signed dev tokens on a developer's machine.

Nothing here knows HTTP; web/auth.py is the one FastAPI dependency that uses it.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shelfwise.errors import Unauthenticated
from shelfwise.settings import Settings

LOCAL_ISSUER = "shelfwise-local"
LOCAL_AUDIENCE = "shelfwise"
_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$")


@dataclass(frozen=True)
class Caller:
    user_id: str  # Cognito `sub` on AWS, the dev user name locally: the owner key of user data
    username: str
    groups: frozenset[str]
    is_admin: bool


def _groups(raw: Any) -> frozenset[str]:
    """Cognito groups arrive as a list, or flattened to "a,b" or "[a b]" by API Gateway."""
    if raw is None:
        return frozenset()
    if isinstance(raw, list | tuple | set | frozenset):
        return frozenset(str(g) for g in raw if str(g))
    return frozenset(g for g in re.split(r"[\s,]+", str(raw).strip("[]")) if g)


def caller_from_claims(claims: Mapping[str, Any], admin_group: str) -> Caller:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not _USER_ID.match(sub):
        raise Unauthenticated("the token has no usable subject")
    groups = _groups(claims.get("cognito:groups", claims.get("groups")))
    username = str(claims.get("cognito:username") or claims.get("username") or claims.get("email") or sub)
    return Caller(user_id=sub, username=username, groups=groups, is_admin=admin_group in groups)


class LocalAuthOnLambda(RuntimeError):
    """SHELFWISE_AUTH_MODE=local where Lambda serves the API for real: refused at app creation."""


def refuse_local_auth_on_lambda(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Local dev tokens are for a developer's machine and `sam local` (which sets AWS_SAM_LOCAL=true:
    events/env.start-api.json uses them on purpose). On Lambda itself they would let anyone holding
    the signing key in: raise, so the function's init fails and says which setting to fix."""
    env = os.environ if environ is None else environ
    function = env.get("AWS_LAMBDA_FUNCTION_NAME")
    if settings.auth_mode != "local" or not function or env.get("AWS_SAM_LOCAL", "").lower() == "true":
        return
    raise LocalAuthOnLambda(
        f"SHELFWISE_AUTH_MODE=local is refused on Lambda ({function}): it would accept dev tokens "
        "signed with a local key instead of Cognito's. Set SHELFWISE_AUTH_MODE=cognito (or leave it "
        "unset); local is for `make run` and `sam local` only."
    )


# -- local dev tokens (HS256) -----------------------------------------------------------------------
def signing_key(settings: Settings, *, create: bool = False) -> bytes:
    """The local signing key: from settings, else the key file (created with mode 0600 if asked)."""
    if settings.local_signing_key is not None:
        return settings.local_signing_key.get_secret_value().encode()
    path: Path = settings.local_signing_key_file
    if path.exists():
        return path.read_bytes().strip()
    if not create:
        raise Unauthenticated("local tokens are not set up: run `shelfwise dev-token USER` once")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def issue_dev_token(settings: Settings, user: str, *, admin: bool = False, ttl: int | None = None) -> str:
    import jwt

    if not _USER_ID.match(user):
        raise ValueError("user must be 1-128 letters, digits or _.@+-")
    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "sub": user,
        "cognito:username": user,
        "cognito:groups": [settings.admin_group] if admin else [],
        "iat": now,
        "exp": now + (ttl if ttl is not None else settings.local_token_ttl_seconds),
    }
    return jwt.encode(claims, signing_key(settings, create=True), algorithm="HS256")


def verify_dev_token(key: bytes, token: str, *, admin_group: str) -> Caller:
    import jwt

    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=LOCAL_AUDIENCE,
            issuer=LOCAL_ISSUER,
            options={"require": ["exp", "iat", "sub"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("the token is not valid") from exc
    return caller_from_claims(claims, admin_group)
