"""The three functions under `sam local`, for real: the built artefacts (`sam build`) in the arm64
Lambda container SAM makes from the base image (AWS's, or on a machine that reaches no image registry
the stand-in infra/docker/setup.sh builds), run under emulation where the CPU is not arm64.

The containers reach the host at docker0's address, so DynamoDB Local and the offline model listen
there too, and each run's --env-vars file is events/env.local.json (what a user passes) with this
run's ports and table. First, that a published port refuses until the container listens (what SAM's
readiness check needs: Docker without its userland proxy). Then the README's invokes, in its order,
with its payloads:
  ApiFunction        events/api/conversation-create.json  -> the proxy JSON answer (201)
  ChatStreamFunction events/stream/message-post.json      -> prelude, 8 NULs, SSE frames
  TitleFunction      events/titles/stream-batch.json      -> batch response, titles in the table
  sam local start-api, a buffered route with a dev token   -> the conversation the turn filled
Emulated, an invoke takes about a minute (55-70 s here; 75-85 s with both cores busy): there are few
of them, and generous timeouts.

Without Docker these tests are reported as not run; in CI (CI=true) that is a failure instead.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local.dynamodb_local import DynamoDBLocal
from infra.local.offline_model import OfflineModel
from infra.local.run import interface_ipv4
from infra.local.table import create_table
from tests.fixtures.conversations import seed_first_exchange
from tests.fixtures.runtime_api import DELIMITER, USER_SUB, sse_events
from tests.fixtures.sam import ROOT, SAM_WRAPPER, sam_environment

pytestmark = [pytest.mark.sam_local, pytest.mark.slow]

IMAGE = "public.ecr.aws/lambda/python:3.13-arm64"
EVENTS = ROOT / "events"
TABLE = "shelfwise-sam-local"
CONVERSATION = "c0ffee0000000000000000000000beef"  # the id events/api/conversation-create.json chooses
INVOKE_TIMEOUT_S = 400  # one emulated invoke: 55-70 s here, 75-85 s with both cores busy


def _not_run(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{reason}; in CI the sam local tests must run "
            "(.ci/run prepares Docker with infra/docker/setup.sh)"
        )
    pytest.skip(f"{reason}: the sam local tests need Docker (infra/docker/setup.sh sets it up on Debian)")


@dataclass(frozen=True)
class Docker:
    host: str  # docker0's address: where the containers reach this machine
    skip_pull: bool  # the base image is here already (AWS's or the stand-in): never pull it


@pytest.fixture(scope="session")
def docker() -> Docker:
    if shutil.which("docker") is None:
        _not_run("no `docker` command")
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        _not_run(f"Docker's daemon does not answer (`docker info`: {info.stderr.strip()[-300:]})")
    host = interface_ipv4("docker0")
    if host is None:
        _not_run("no docker0 interface, so the containers cannot reach DynamoDB Local")
    assert host is not None
    image = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, timeout=60, check=False
    )
    if image.returncode != 0 and os.environ.get("CI") == "true":
        pytest.fail(
            f"{IMAGE} is missing: in CI it is built by infra/docker/setup.sh (no registry is reachable)"
        )
    # Elsewhere, an absent image is AWS's own, which SAM pulls.
    return Docker(host=host, skip_pull=image.returncode == 0)


@dataclass
class Stack:
    docker: Docker
    template: Path  # the built template (sam build's), with a longer timeout where emulated
    env_file: Path
    ddb: DynamoDBLocal
    model: OfflineModel
    services: Any  # shelfwise.services.Services over the containers' table, to check what they stored

    def sam(self, *args: str, timeout: float = INVOKE_TIMEOUT_S) -> subprocess.CompletedProcess[bytes]:
        command = [str(SAM_WRAPPER), *args, "-t", str(self.template)]
        command += ["--env-vars", str(self.env_file)]
        if self.docker.skip_pull:
            command.append("--skip-pull-image")
        return subprocess.run(
            command, cwd=ROOT, env=sam_environment(), capture_output=True, timeout=timeout, check=False
        )

    def invoke(self, function: str, event: str) -> bytes:
        """`sam local invoke FUNCTION -e events/EVENT`: what the function answered (SAM's stdout)."""
        started = time.monotonic()
        proc = self.sam("local", "invoke", function, "-e", str(EVENTS / event))
        took = time.monotonic() - started
        err = proc.stderr.decode(errors="replace")
        print(f"sam local invoke {function} -e events/{event}: {took:.1f} s")
        assert proc.returncode == 0, f"{function}: exit {proc.returncode} after {took:.0f} s\n{err[-6000:]}"
        assert proc.stdout.strip(), f"{function} answered nothing after {took:.0f} s:\n{err[-6000:]}"
        return proc.stdout


EMULATED = platform.machine().lower() not in ("aarch64", "arm64")
BUFFERED_TIMEOUT = "    Timeout: 29\n"  # Globals: API Gateway's limit, which ApiFunction keeps
STREAM_TIMEOUT = "      Timeout: 900\n"  # ChatStreamFunction's
TITLE_TIMEOUT = "      Timeout: 60\n"  # TitleFunction's: cold imports alone take ~17 s under qemu
EMULATED_TIMEOUT_S = 150  # a cold ApiFunction takes 25-45 s emulated


def _local_template(build_dir: Path) -> Path:
    """The built template, as the README has it: where the arm64 container is emulated, a cold
    ApiFunction needs more than its 29 s (imports alone take ~17 s under qemu), so the README raises the
    buffered functions' timeout in the built template (`sed`), and so does this."""
    built = build_dir / "template.yaml"
    if not EMULATED:
        return built
    text = built.read_text()
    assert text.count(BUFFERED_TIMEOUT) == 1, "the built template's Globals timeout moved: update the README"
    text = text.replace(BUFFERED_TIMEOUT, f"    Timeout: {EMULATED_TIMEOUT_S}\n")
    # ChatStreamFunction's 15 minutes, cut too, so that an invoke the emulator drops ends sooner.
    assert text.count(STREAM_TIMEOUT) == 1, text
    text = text.replace(STREAM_TIMEOUT, f"      Timeout: {EMULATED_TIMEOUT_S}\n")
    # TitleFunction's minute, raised: its model calls share what the cold start leaves (a fallback
    # title was seen on CI when they did not fit).
    assert text.count(TITLE_TIMEOUT) == 1, "TitleFunction's timeout moved: update the README"
    text = text.replace(TITLE_TIMEOUT, f"      Timeout: {EMULATED_TIMEOUT_S}\n")
    local = build_dir / "template.emulated.yaml"  # beside it: CodeUri paths are relative to it
    local.write_text(text)
    return local


def _local_env(host: str, db_port: int, model_port: int) -> dict[str, Any]:
    """events/env.local.json, aimed at this run's DynamoDB Local, model and table."""
    env: dict[str, Any] = json.loads((EVENTS / "env.local.json").read_text())
    shipped = env["Parameters"]
    assert shipped["SHELFWISE_DYNAMODB_ENDPOINT_URL"].startswith("http://172.17.0.1:")
    shipped["SHELFWISE_DYNAMODB_ENDPOINT_URL"] = f"http://{host}:{db_port}"
    shipped["SHELFWISE_OPENAI_BASE_URL"] = f"http://{host}:{model_port}/v1"
    shipped["SHELFWISE_TABLE_NAME"] = TABLE
    return env


@pytest.fixture(scope="module")
def stack(docker: Docker, sam_build_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from infra.local.demo import seed
    from shelfwise.services import Services
    from shelfwise.settings import Settings
    from shelfwise.storage.dynamo import Dynamo, dynamodb_client

    with (
        DynamoDBLocal(hosts=("127.0.0.1", docker.host)) as ddb,
        OfflineModel("127.0.0.1", 0, extra_hosts=(docker.host,)) as model,
    ):
        client = dynamodb_client(ddb.region, ddb.endpoint_url)
        create_table(client, TABLE)
        settings = Settings(table_name=TABLE, dynamodb_endpoint_url=ddb.endpoint_url, aws_region=ddb.region)
        services = Services(settings, dynamo=Dynamo(client, TABLE))
        seed(services.inventory)
        model_port = int(model.url.rsplit(":", 1)[1])
        env_file = tmp_path_factory.mktemp("sam-local") / "env.json"
        env_file.write_text(json.dumps(_local_env(docker.host, ddb.port, model_port)))
        yield Stack(docker, _local_template(sam_build_dir), env_file, ddb, model, services)


def _proxy_answer(stdout: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(stdout)
    assert set(answer) >= {"statusCode", "headers", "body"}, answer
    return answer


@pytest.mark.timeout(INVOKE_TIMEOUT_S)
def test_a_published_port_refuses_until_the_container_listens(docker: Docker) -> None:
    """What `sam local invoke` relies on: it sends the event once the function's published port takes
    a connection, and gives up after three tries within a second. Docker's userland proxy takes the
    connection before anything in the container listens, so an emulated Lambda emulator that is slow
    to start (a busy machine) lost every invoke as "No response from invoke container" and SAM then
    waited out the function's timeout (seen on CI, and here with both cores busy). Docker without the
    proxy (infra/docker/setup.sh) refuses the port until the container's server listens."""
    run = ["docker", "run", "-d", "--rm", "--platform", "linux/arm64", "-p", "127.0.0.1::8080"]
    server = "sleep 10; exec /var/lang/bin/python3.13 -m http.server 8080"
    run += ["--entrypoint", "/bin/sh", IMAGE, "-c", server]
    started = subprocess.run(run, capture_output=True, text=True, timeout=120, check=True)
    container = started.stdout.strip()
    try:
        mapped = subprocess.run(
            ["docker", "port", container, "8080/tcp"], capture_output=True, text=True, timeout=60, check=True
        )
        port = int(mapped.stdout.split()[0].rsplit(":", 1)[1])
        with closing(socket.socket()) as early:
            assert early.connect_ex(("127.0.0.1", port)) != 0, (
                "the port took a connection before the server listened"
            )
        # The same port reaches the server once it listens.
        deadline = time.monotonic() + INVOKE_TIMEOUT_S - 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                    assert answer.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the container's server never answered on its port"
                time.sleep(0.5)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60, check=False)


@pytest.mark.timeout(900 + INVOKE_TIMEOUT_S)  # the session's sam build, then an emulated invoke
def test_api_function_creates_the_conversation_the_events_chain_on(stack: Stack) -> None:
    answer = _proxy_answer(stack.invoke("ApiFunction", "api/conversation-create.json"))
    assert answer["statusCode"] == 201, answer
    assert answer["headers"]["content-type"] == "application/json"
    assert answer["headers"]["location"] == f"/conversations/{CONVERSATION}"
    body = json.loads(answer["body"])
    assert (body["id"], body["prompt_key"], body["message_count"]) == (CONVERSATION, "inventory-assistant", 0)
    # The container wrote to this machine's DynamoDB Local, under the caller of the event's claims.
    stored = stack.services.chat.get_conversation(USER_SUB, CONVERSATION)
    assert stored.created_at == body["created_at"]


@pytest.mark.timeout(INVOKE_TIMEOUT_S + 60)
def test_chat_stream_function_streams_through_its_exec_wrapper(stack: Stack) -> None:
    if not _exists(stack, CONVERSATION):  # run alone: the conversation the first test creates
        from tests.fixtures.runtime_api import create_conversation

        create_conversation(stack.services, CONVERSATION)
    raw = stack.invoke("ChatStreamFunction", "stream/message-post.json")
    prelude_bytes, delimiter, payload = raw.partition(DELIMITER)
    assert delimiter == b"\0" * 8, f"no 8-NUL delimiter after the prelude: {raw[:400]!r}"
    prelude = json.loads(prelude_bytes)
    assert prelude["statusCode"] == 200, raw[:1000]
    assert prelude["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    frames = sse_events(payload)
    names = [name for name, _ in frames]
    assert names[0] == "start", names
    assert names[-1] == "done", names
    assert "delta" in names
    start = frames[0][1]
    assert (start["conversation_id"], start["model"]) == (CONVERSATION, "shelfwise-offline")
    answer = "".join(data["content"] for name, data in frames if name == "delta")
    assert "Essential Tee in black (TE-0001): M 17" in answer  # the demo inventory's count, read live
    # What the user reads back later is what was streamed.
    messages = stack.services.chat.list_messages(USER_SUB, CONVERSATION, limit=10, cursor=None).items
    assert [(m.role, m.status) for m in messages] == [("user", "complete"), ("assistant", "complete")]
    assert messages[1].content == answer


def _exists(stack: Stack, conversation_id: str) -> bool:
    from shelfwise.errors import NotFound

    try:
        stack.services.chat.get_conversation(USER_SUB, conversation_id)
    except NotFound:
        return False
    return True


def _seed_title_batch(stack: Stack, event: dict[str, Any]) -> None:
    """The conversations the batch's records name, as their NewImages show them, with a first exchange."""

    client = stack.ddb.client()
    questions = ["How many black hoodies in M do we have?", "What is low on stock?"]
    for record, question in zip(event["Records"], questions, strict=True):
        seed_first_exchange(client, TABLE, record["dynamodb"]["NewImage"], question)


@pytest.mark.timeout(INVOKE_TIMEOUT_S + 60)
def test_title_function_titles_the_batch(stack: Stack) -> None:
    from shelfwise.storage.codec import decode_item

    event = json.loads((EVENTS / "titles" / "stream-batch.json").read_text())
    _seed_title_batch(stack, event)
    answer = json.loads(stack.invoke("TitleFunction", "titles/stream-batch.json"))
    assert answer == {"batchItemFailures": []}
    titles = {}
    for record in event["Records"]:
        key = record["dynamodb"]["Keys"]
        item: Any = stack.ddb.client().get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
        stored = decode_item(item)
        assert stored["title_source"] == "generated"
        assert "title_requested" not in stored
        titles[stored["id"]] = stored["title"]
    assert titles == {
        "8d2f61c04b7e4a9e9f3a5c1d7e0b2a64": "Black hoodie stock check",  # a first title
        "c5e07a9d31f24b8c8e6d4f2a1b9c0e37": "Low stock review",  # a refresh of the old one
    }
    # The utility model was asked, from the container, once per record.
    asked = [r for r in stack.model.requests() if r["task"] == "title"]
    assert len(asked) == len(event["Records"])


def _free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.timeout(INVOKE_TIMEOUT_S + 120)
def test_start_api_serves_a_buffered_route_with_a_dev_token(stack: Stack, tmp_path: Path) -> None:
    """SAM's local API runs no Cognito authorizer: ApiFunction verifies a dev token itself
    (events/env.start-api.json: auth mode `local` and the signing key the token is made with)."""
    from shelfwise.identity import issue_dev_token
    from shelfwise.settings import Settings

    if not _exists(stack, CONVERSATION):
        from tests.fixtures.runtime_api import create_conversation

        create_conversation(stack.services, CONVERSATION)
    start_api: dict[str, Any] = json.loads((EVENTS / "env.start-api.json").read_text())
    env = json.loads(stack.env_file.read_text())
    env["ApiFunction"] = start_api["ApiFunction"]
    env_file = tmp_path / "env.start-api.json"
    env_file.write_text(json.dumps(env))
    key = start_api["ApiFunction"]["SHELFWISE_LOCAL_SIGNING_KEY"]
    token = issue_dev_token(Settings(local_signing_key=key), USER_SUB)

    port = _free_port()
    command = [str(SAM_WRAPPER), "local", "start-api", "-t", str(stack.template)]
    command += ["--env-vars", str(env_file), "--port", str(port), "--warm-containers", "LAZY"]
    if stack.docker.skip_pull:
        command.append("--skip-pull-image")
    log = tmp_path / "start-api.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=ROOT, env=sam_environment(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            with closing(socket.socket()) as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        base = f"http://127.0.0.1:{port}"
        status, body = _get(f"{base}/conversations/{CONVERSATION}", token)
        assert status == 200, (body, log.read_text()[-4000:])
        assert body["id"] == CONVERSATION
        # Without a token the app itself refuses (no authorizer ran before it).
        status, body = _get(f"{base}/conversations/{CONVERSATION}", None)
        assert status == 401, body
        assert body["error"]["code"] == "unauthenticated"
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
