"""A write the caller may safely retry: its Idempotency-Key and what it asked (no HTTP, no DynamoDB).

The web layer builds one per request that sends the header; inventory services record their answer
under it in the write's own transaction, and answer a repeat from that record (`replayed`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

KEY_TTL_SECONDS = 24 * 3600


def fingerprint(method: str, path: str, body: Any) -> str:
    """What a request asked, independent of JSON spacing and key order."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class IdempotentRequest:
    user_id: str  # keys are per caller
    key: str
    fingerprint: str
    replayed: bool = False  # set when the answer came from the record of an earlier request

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()
