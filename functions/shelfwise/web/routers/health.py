from __future__ import annotations

from fastapi import APIRouter

from shelfwise.web.deps import SettingsDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(settings: SettingsDep) -> dict[str, str]:
    """Liveness: no authentication, no database."""
    return {"status": "ok", "version": settings.version}
