"""`make run`: the whole stack on this machine, no AWS account, no API key, no Docker.

  DynamoDB Local (AWS's emulator) -> table from template.yaml -> demo inventory (into an empty table)
  -> the offline model (unless OPENAI_API_KEY is set) -> the app under uvicorn -> the stream pump
  (table stream -> the template's FilterCriteria -> TitleFunction's handler)

Prints the URL, the OpenAPI docs URL, an admin dev token and a command to try. Ctrl-C stops
everything it started. The data is kept in `.local/dynamodb` (SHELFWISE_LOCAL_DATA) across restarts.
Where DynamoDB Local cannot run (no npm to install it), the stack runs on moto's in-memory DynamoDB
instead and says so.

Environment (the Makefile passes its variables of the same names):
  PORT, HOST                  where the app listens (8000, 127.0.0.1)
  FRESH=1                     drop the local data first
  LAMBDA=1                    also serve Lambda containers (`sam local invoke`): DynamoDB Local and the
                              offline model listen on fixed ports on docker0's address as well
  SHELFWISE_DB_PORT           DynamoDB Local's port (free port; 8100 with LAMBDA=1)
  SHELFWISE_OFFLINE_PORT      the offline model's port (free port; 8101 with LAMBDA=1)
  SHELFWISE_LOCAL_DB          dynamodb-local (default) or moto
  SHELFWISE_LOCAL_DATA        the data folder (.local/dynamodb)
  SHELFWISE_OFFLINE_DELAY_MS  the offline model's pause between chunks (25)
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE_NAME = "shelfwise-local"
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = Path(".local/dynamodb")
# Fixed ports for LAMBDA=1: events/env.local.json points the Lambda containers at them.
LAMBDA_DB_PORT = 8100
LAMBDA_OFFLINE_PORT = 8101
# moto's cancelled transactions strand stream iterators (infra.local.stream_pump): re-take idle ones.
MOTO_RETAKE_IDLE_SECONDS = 0.5
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class RunError(Exception):
    """A reason the stack cannot start, said in one line."""


def flag(env: Mapping[str, str], name: str) -> bool:
    """A yes/no setting: 1/true/yes/on or 0/false/no/off/empty (any case); anything else is an error."""
    value = env.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RunError(f"{name}={env[name]!r}: say 1 (or true/yes) or 0 (or false/no)")


@dataclass(frozen=True)
class Options:
    host: str
    port: int
    fresh: bool
    lambda_mode: bool
    db: str
    db_port: int
    offline_port: int
    data_dir: Path
    offline_delay_ms: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Options:
        lambda_mode = flag(env, "LAMBDA")
        db = env.get("SHELFWISE_LOCAL_DB", "dynamodb-local") or "dynamodb-local"
        if db not in ("dynamodb-local", "moto"):
            raise RunError(f"SHELFWISE_LOCAL_DB={db!r}: say dynamodb-local or moto")
        try:
            return cls(
                host=env.get("HOST", "127.0.0.1") or "127.0.0.1",
                port=int(env.get("PORT", "8000") or 8000),
                fresh=flag(env, "FRESH"),
                lambda_mode=lambda_mode,
                db=db,
                db_port=int(env.get("SHELFWISE_DB_PORT") or (LAMBDA_DB_PORT if lambda_mode else 0)),
                offline_port=int(
                    env.get("SHELFWISE_OFFLINE_PORT") or (LAMBDA_OFFLINE_PORT if lambda_mode else 0)
                ),
                data_dir=Path(env.get("SHELFWISE_LOCAL_DATA") or DEFAULT_DATA),
                offline_delay_ms=int(env.get("SHELFWISE_OFFLINE_DELAY_MS", "25") or 25),
            )
        except ValueError as exc:
            raise RunError(f"a port or delay is not a number: {exc}") from exc


def _port_in_use(host: str, port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        return sock.connect_ex((host, port)) == 0


def _say(message: str) -> None:
    print(f"shelfwise | {message}", flush=True)


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of a network interface (docker0's: where Lambda containers reach the host)."""
    import fcntl
    import struct

    with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        try:
            packed = fcntl.ioctl(
                sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode())
            )  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


class Database:
    """The stack's DynamoDB: DynamoDB Local (kept on disk) or, as a fallback, moto in memory."""

    def __init__(self, kind: str, endpoint_url: str, stop: Callable[[], None], note: str) -> None:
        self.kind = kind
        self.endpoint_url = endpoint_url
        self.stop = stop
        self.note = note


def start_database(options: Options, hosts: tuple[str, ...]) -> Database:
    if options.db == "dynamodb-local":
        from infra.local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError, find_jar

        try:
            find_jar()
        except DynamoDBLocalError:
            _say("database: DynamoDB Local is not installed (npm installs it); falling back to moto")
        else:
            if options.fresh and options.data_dir.exists():
                shutil.rmtree(options.data_dir)
            ddb = DynamoDBLocal(
                port=options.db_port or None, db_path=options.data_dir, hosts=hosts, stop_timeout=1.5
            )
            ddb.start()
            kept = f"data kept in {options.data_dir}; FRESH=1 starts clean"
            if ddb.bound_to_all_interfaces:
                kept += "; this Java has no compiler, so it listens on ALL interfaces"
            return Database("DynamoDB Local", ddb.endpoint_url, ddb.stop, kept)
    if options.lambda_mode:
        raise RunError("LAMBDA=1 needs DynamoDB Local (moto's server cannot listen on docker0 alone)")
    from infra.local.embedded_dynamodb import EmbeddedDynamoDB

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    embedded = EmbeddedDynamoDB(port=options.db_port).start()
    return Database("moto", embedded.endpoint_url, embedded.stop, "in memory: gone at exit")


def prepare_table(client: DynamoDBClient, table_name: str) -> bool:
    """Create the table from template.yaml unless it exists; True when it was created or is empty.

    A table left by an older template.yaml (other indexes or keys) is refused: FRESH=1 rebuilds it."""
    from infra.local.table import create_table, create_table_input

    try:
        found = client.describe_table(TableName=table_name)["Table"]
    except client.exceptions.ResourceNotFoundException:
        create_table(client, table_name)
        return True
    wanted = create_table_input(table_name)

    def shape(table: Any) -> tuple[Any, ...]:
        indexes = {i["IndexName"]: i["KeySchema"] for i in table.get("GlobalSecondaryIndexes", [])}
        return (table["KeySchema"], indexes)

    if shape(found) != shape(wanted):
        raise RunError(
            f"the local table {table_name} was made from an older template.yaml; "
            "`make run FRESH=1` rebuilds it (its data is dropped)"
        )
    return not client.scan(TableName=table_name, Limit=1).get("Items")


def _banner(server: Any, url: str, token: str) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.01)
    _say(f"chat page {url}/  (open it in a browser: Sign in (local), then ask)")
    _say(f"API       {url}")
    _say(f"API docs  {url}/docs")
    _say("admin dev token (12 h; `make dev-token USER_ID=alice` for a non-admin one):")
    print(token, flush=True)
    _say("try it in another terminal:")
    print(f"  TOKEN={token}", flush=True)
    print(f"  curl -H \"Authorization: Bearer $TOKEN\" '{url}/products?limit=3'", flush=True)
    _say("Ctrl-C stops everything")


def main(env: Mapping[str, str] | None = None) -> int:
    try:
        options = Options.from_env(os.environ if env is None else env)
        return _serve(options)
    except RunError as exc:
        _say(str(exc))
        return 1


def _serve(options: Options) -> int:
    host, port = options.host, options.port
    if _port_in_use(host, port):
        raise RunError(f"port {port} is taken: stop what uses it or run `PORT=8001 make run`")
    hosts: tuple[str, ...] = ("127.0.0.1",)
    if options.lambda_mode:
        docker0 = os.environ.get("SHELFWISE_LAMBDA_HOST") or interface_ipv4("docker0")
        if not docker0:
            raise RunError("LAMBDA=1: no docker0 interface here (is Docker installed and running?)")
        hosts += (docker0,)
    # The local cloud: fake credentials and a fixed region so nothing ever reaches real AWS.
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="local",
        AWS_SECRET_ACCESS_KEY="local",  # noqa: S106 - the local DynamoDB's dummy secret
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_TRACE_DISABLED="true",
    )

    started = time.perf_counter()
    stack = ExitStack()
    try:
        db = start_database(options, hosts)
        stack.callback(db.stop)
        endpoint = db.endpoint_url

        import uvicorn

        from infra.local.demo import seed
        from infra.local.flush_metrics import FlushMetrics
        from infra.local.stream_pump import StreamPump
        from shelfwise.entry.titles import make_handler
        from shelfwise.identity import issue_dev_token
        from shelfwise.settings import Settings
        from shelfwise.storage.dynamo import dynamodb_client
        from shelfwise.web.app import create_app

        model_settings: dict[str, object] = {}
        if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("SHELFWISE_OPENAI_API_KEY"):
            from infra.local.offline_model import OfflineModel

            offline = OfflineModel(
                hosts[0],
                options.offline_port,
                token_delay_ms=options.offline_delay_ms,
                extra_hosts=hosts[1:],
            )
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
        empty = prepare_table(dynamodb_client(settings.aws_region, endpoint), TABLE_NAME)
        _say(f"database: {db.kind} on {endpoint}, table {TABLE_NAME} built from template.yaml ({db.note})")
        app = create_app(settings)
        if empty:
            count = seed(app.state.services.inventory)
            _say(f"demo inventory: {count} products ({time.perf_counter() - started:.1f}s)")
        else:
            _say(f"demo inventory: kept from the last run ({time.perf_counter() - started:.1f}s)")
        from shelfwise.entry import purge

        for function, handler in (("TitleFunction", make_handler), ("PurgeFunction", purge.make_handler)):
            pump = StreamPump(
                endpoint_url=endpoint,
                table_name=TABLE_NAME,
                function=function,
                handler=handler(lambda: app.state.services),
                retake_idle_seconds=MOTO_RETAKE_IDLE_SECONDS if db.kind == "moto" else None,
            ).start()
            stack.callback(pump.stop, 1.0)
        _say("stream pumps: table stream -> TitleFunction (titles appear a moment after a first answer)")
        _say("              and PurgeFunction (a deleted product's history is removed, bulk lines filed)")
        if options.lambda_mode:
            _say(f"Lambda containers: DynamoDB Local on {hosts[1]}:{options.db_port}, the model on")
            _say(f"       {hosts[1]}:{options.offline_port} (the ports events/env.local.json names)")
        token = issue_dev_token(settings, "admin", admin=True)
        server = uvicorn.Server(
            uvicorn.Config(
                FlushMetrics(app),
                host=host,
                port=port,
                log_level=os.environ.get("LOG_LEVEL", "warning").lower(),
                timeout_graceful_shutdown=1,  # open streams are cut after 1 s: Ctrl-C is quick
            )
        )
        # The rest of the banner once the app listens: the printed commands work the moment they show.
        threading.Thread(target=_banner, args=(server, f"http://{host}:{port}", token), daemon=True).start()
        server.run()
    except KeyboardInterrupt:
        pass  # Ctrl-C before the server was up: stop what started
    finally:
        stack.close()
        _say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
