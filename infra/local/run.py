"""`make run`: the whole stack on this machine, no AWS account, no API key, no Docker.

  embedded DynamoDB (moto server) -> table from template.yaml -> demo inventory -> app under uvicorn

Prints the URL, the OpenAPI docs URL and an admin dev token. Ctrl-C stops everything it started.
Environment: PORT (default 8000), HOST (default 127.0.0.1), SHELFWISE_DB_PORT (default: a free port).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import ExitStack, closing

TABLE_NAME = "shelfwise-local"


def _port_in_use(host: str, port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        return sock.connect_ex((host, port)) == 0


def _say(message: str) -> None:
    print(f"shelfwise | {message}", flush=True)


def main() -> int:
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    if _port_in_use(host, port):
        _say(f"port {port} is taken: stop what uses it or run `PORT=8001 make run`")
        return 1
    # The embedded cloud: fake credentials and a fixed region so nothing ever reaches real AWS.
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - the embedded DynamoDB's dummy secret
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_TRACE_DISABLED="true",
    )

    started = time.perf_counter()
    from infra.local.embedded_dynamodb import EmbeddedDynamoDB

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    db = EmbeddedDynamoDB(port=int(os.environ.get("SHELFWISE_DB_PORT", "0"))).start()
    endpoint = db.endpoint_url
    stack = ExitStack()
    try:
        import uvicorn

        from infra.local.demo import seed
        from infra.local.flush_metrics import FlushMetrics
        from infra.local.table import create_table
        from shelfwise.identity import issue_dev_token
        from shelfwise.settings import Settings
        from shelfwise.storage.dynamo import dynamodb_client
        from shelfwise.web.app import create_app

        model_settings: dict[str, object] = {}
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("SHELFWISE_OPENAI_API_KEY"):
            from infra.local.offline_model import OfflineModel

            offline = OfflineModel(token_delay_ms=int(os.environ.get("SHELFWISE_OFFLINE_DELAY_MS", "25")))
            stack.callback(offline.stop)
            offline.start()
            model_settings = {
                "openai_base_url": offline.base_url,
                "main_model": "shelfwise-offline",
                "utility_model": "shelfwise-offline-utility",
            }
            _say(f"model: the built-in OFFLINE model on {offline.base_url} (deterministic rules, not an LLM;")
            _say("       set OPENAI_API_KEY to talk to a real model)")
        else:
            _say("model: OpenAI-compatible API (OPENAI_API_KEY is set)")
        settings = Settings(
            table_name=TABLE_NAME,
            dynamodb_endpoint_url=endpoint,
            auth_mode="local",
            aws_region="us-east-1",
            **model_settings,  # type: ignore[arg-type]
        )
        create_table(dynamodb_client(settings.aws_region, endpoint), TABLE_NAME)
        _say(f"embedded DynamoDB on {endpoint}, table {TABLE_NAME} built from template.yaml")
        app = create_app(settings)
        count = seed(app.state.services.inventory)
        # Titles: the table's stream -> the template's FilterCriteria -> TitleFunction's handler.
        from infra.local.stream_pump import StreamPump
        from shelfwise.entry.titles import make_handler

        pump = StreamPump(
            endpoint_url=endpoint, table_name=TABLE_NAME, handler=make_handler(lambda: app.state.services)
        ).start()
        stack.callback(pump.stop)
        _say("stream pump: table stream -> TitleFunction (titles appear a moment after a first answer)")
        _say(f"demo inventory: {count} products ({time.perf_counter() - started:.1f}s)")
        token = issue_dev_token(settings, "admin", admin=True)
        url = f"http://{host}:{port}"
        _say(f"API       {url}")
        _say(f"API docs  {url}/docs")
        _say("admin dev token (12 h; `make dev-token USER_ID=alice` for a non-admin one):")
        print(token, flush=True)
        _say(f'try: curl -H "Authorization: Bearer $TOKEN" {url}/products?limit=3')
        _say("     (the README's quick start has a whole conversation with the assistant)")
        _say("Ctrl-C stops everything")
        uvicorn.run(
            FlushMetrics(app), host=host, port=port, log_level=os.environ.get("LOG_LEVEL", "warning").lower()
        )
    finally:
        stack.close()
        db.stop()
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
