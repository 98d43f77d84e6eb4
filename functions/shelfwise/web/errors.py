"""Domain errors -> HTTP, in exactly one place. Every error answers {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shelfwise import errors
from shelfwise.observability import logger

STATUS: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.Conflict: 409,
    errors.InsufficientStock: 409,
    errors.IdempotencyKeyReused: 422,
    errors.StorageUnavailable: 503,
    errors.UpstreamRateLimited: 429,
    errors.BudgetExceeded: 429,
    errors.UpstreamError: 502,
    errors.UpstreamTimeout: 504,
    errors.StorageError: 500,
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated", 403: "forbidden"}


def status_of(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    status = status_of(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.ResourceUnauthenticated):
        headers["WWW-Authenticate"] = f'Bearer resource_metadata="{exc.resource_metadata}"'
    elif status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if status == 503:
        headers["Retry-After"] = "1"
    if isinstance(exc, errors.UpstreamRateLimited | errors.TurnInProgress | errors.BudgetExceeded):
        headers["Retry-After"] = str(exc.retry_after or 1)
    if status >= 500:
        logger.error("request failed", extra={"code": exc.code, "details": exc.details})
    details = {k: v for k, v in exc.details.items() if k != "reason"}
    if isinstance(exc, errors.InvalidInput) and "field" in details:  # listed as a 422 lists them
        details["fields"] = [{"field": details["field"], "message": exc.message}]
    return JSONResponse(error_body(exc.code, exc.message, **details), status_code=status, headers=headers)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        fields.append({"field": ".".join(loc) or "body", "message": err.get("msg", "invalid")})
    names = ", ".join(dict.fromkeys(f["field"] for f in fields))
    return JSONResponse(
        error_body("validation_error", f"invalid request: {names}", fields=fields), status_code=422
    )


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=getattr(exc, "headers", None)
    )


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error", exc_info=exc)
    return JSONResponse(error_body("internal_error", "something went wrong on our side"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
