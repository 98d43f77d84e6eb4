"""The embedded DynamoDB of the local stack: moto's server, with every request serialised.

moto's backend is not thread-safe: under concurrent requests its conditional writes and counters
are not atomic (two callers could take the same SKU number) and TransactWriteItems can crash while
it snapshots the table. Real DynamoDB makes each single-item write and each transaction atomic; a
lock around the whole application gives the embedded one the same guarantee (and more), at the
cost of parallelism that a developer's machine does not need.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _serialised(app: WSGIApp) -> WSGIApp:
    lock = threading.Lock()

    def locked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))  # finish the body while holding the lock

    return locked


class EmbeddedDynamoDB:
    """`with EmbeddedDynamoDB() as db: db.endpoint_url` - moto's DynamoDB on loopback."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = _serialised(DomainDispatcherApplication(create_backend_app))
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-dynamodb", daemon=True
        )

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> EmbeddedDynamoDB:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmbeddedDynamoDB:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
