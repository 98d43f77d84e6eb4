"""Write records: what an inventory write answered under an Idempotency-Key (see storage.items).

A record is never a separate step: `Claim.action` is one more action of the write's own transaction,
conditional on no live record under that key. When it fails, `Claim.taken` raises `KeyTaken` with
the record that is there (the first request won, or answered long ago), and the service answers from
it. An expired record that TTL has not yet removed counts as absent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from shelfwise import clock
from shelfwise.idempotency import KEY_TTL_SECONDS, IdempotentRequest
from shelfwise.storage.codec import Item
from shelfwise.storage.dynamo import Action, Dynamo, Put, TransactionCancelled
from shelfwise.storage.expressions import Cond, absent, lt
from shelfwise.storage.items import Key, WriteRecord


class KeyTaken(Exception):
    """A live record already holds the key: `record` is it."""

    def __init__(self, record: WriteRecord) -> None:
        super().__init__("idempotency key taken")
        self.record = record


def _free(now: int) -> Cond:
    return absent("pk") | lt("expires_at", now)


def _live(item: Item | None) -> WriteRecord | None:
    record = WriteRecord.parse(item) if item else None
    return record if record is not None and record.expires_at >= int(time.time()) else None


class Claim:
    """Records a write's answer under a key, inside the write's transaction. `encode` turns what the
    repository returns into the stored JSON answer (the service knows its shape)."""

    def __init__(self, db: Dynamo, key: Key, fingerprint: str | None, encode: Callable[[Any], str]) -> None:
        self.db = db
        self.key = key
        self.fingerprint = fingerprint
        self.encode = encode

    def action(self, result: Any, *, batch: bool = False) -> Action:
        now = int(time.time())
        record = WriteRecord(
            result=self.encode(result),
            created_at=clock.now_iso(),
            expires_at=now + KEY_TTL_SECONDS,
            fingerprint=self.fingerprint,
        )
        return Put(record.item(self.key, batch=batch), _free(now))

    def raise_if_taken(self) -> None:
        """For a write that finds nothing to do: KeyTaken when the key already holds an answer."""
        if (record := _live(self.db.get(self.key))) is not None:
            raise KeyTaken(record)

    def taken(self, exc: TransactionCancelled, index: int) -> None:
        """Raise KeyTaken when the claim, action `index` of a cancelled transaction, found a record."""
        if not exc.failed(index):
            return
        found = exc.item(index) or self.db.get(self.key)  # an emulator may not return the old item
        if found is None:  # expired and removed in between: not ours to judge, let the caller retry
            return
        raise KeyTaken(WriteRecord.parse(found))


class WriteRecords:
    def __init__(self, db: Dynamo) -> None:
        self.db = db

    def find(self, request: IdempotentRequest) -> WriteRecord | None:
        return _live(self.db.get(WriteRecord.key(request.user_id, request.key_hash)))

    def claim(self, request: IdempotentRequest, encode: Callable[[Any], str]) -> Claim:
        return Claim(self.db, WriteRecord.key(request.user_id, request.key_hash), request.fingerprint, encode)

    def batch(self, batch_id: str, encode: Callable[[Any], str]) -> Claim:
        """The record of a bulk adjustment sent without a key (it carries the lines to file)."""
        return Claim(self.db, WriteRecord.batch_key(batch_id), None, encode)
