"""Domain errors. Services and storage raise these; web/errors.py maps them to HTTP in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the API reports to a caller. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class Conflict(DomainError):
    """A concurrent writer won; the caller may retry."""

    code = "conflict"


class InsufficientStock(DomainError):
    code = "insufficient_stock"

    def __init__(self, message: str, *, sku: str, size: str, quantity: int, delta: int) -> None:
        super().__init__(message, sku=sku, size=size, quantity=quantity, delta=delta)


class StaleQuantity(Conflict):
    """Compare-and-set: the stored quantity is not the `expected_quantity` the caller sent."""

    code = "stale_quantity"

    def __init__(self, message: str, *, sku: str, size: str, quantity: int, expected_quantity: int) -> None:
        super().__init__(message, sku=sku, size=size, quantity=quantity, expected_quantity=expected_quantity)


class LinesRefused(Conflict):
    """A bulk adjustment changed nothing: `lines` says which lines refused, each `{index, code,
    quantity}` (quantity is the stored one, None for a variant that does not exist)."""

    code = "adjustments_refused"

    def __init__(self, message: str, *, lines: list[dict[str, Any]]) -> None:
        super().__init__(message, lines=lines)


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key already answered a different request of the same caller."""

    code = "idempotency_key_reused"


class InvalidInput(DomainError):
    code = "invalid_input"


class Unauthenticated(DomainError):
    code = "unauthenticated"


class ResourceUnauthenticated(Unauthenticated):
    """No usable token for a resource that publishes its protected-resource metadata (RFC 9728):
    the answer tells the client where that document is, so it can find how to get a token."""

    def __init__(self, message: str, *, resource_metadata: str) -> None:
        super().__init__(message)
        self.resource_metadata = resource_metadata


class Forbidden(DomainError):
    code = "forbidden"


class StorageUnavailable(DomainError):
    """DynamoDB throttled or is unreachable; retryable."""

    code = "storage_unavailable"


class StorageError(DomainError):
    """An unexpected storage failure (a bug or misconfiguration)."""

    code = "storage_error"


class TurnInProgress(Conflict):
    """Another turn of the same conversation is running: `message_id` names its answer (when
    known), `retry_after` says when to try again (seconds)."""

    code = "turn_in_progress"

    def __init__(
        self, message: str, *, conversation_id: str, message_id: str | None, retry_after: int
    ) -> None:
        super().__init__(
            message, conversation_id=conversation_id, message_id=message_id, retry_after=retry_after
        )
        self.retry_after = retry_after


class NotRunning(Conflict):
    """A stop asked of an answer that is no longer being generated."""

    code = "not_running"


class BudgetExceeded(DomainError):
    """The caller's token budget for the period is spent: `resets_at` says when it is renewed,
    `retry_after` in how many seconds."""

    code = "budget_exceeded"

    def __init__(self, message: str, *, resets_at: str, retry_after: int) -> None:
        super().__init__(message, resets_at=resets_at, retry_after=retry_after)
        self.retry_after = retry_after


class UpstreamTimeout(DomainError):
    """The model did not answer in time."""

    code = "upstream_timeout"


class UpstreamError(DomainError):
    """The model's server failed or answered something unusable."""

    code = "upstream_error"


class UpstreamRateLimited(DomainError):
    """The model's server asked us to slow down; `retry_after` seconds, when it said."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after
