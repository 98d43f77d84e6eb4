"""`make bench`: installs what the benchmarks need, and prints only result lines on stdout (one JSON
object per line), however much the code under test logs or emits as EMF metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.__main__ import REQUIRED

ROOT = Path(__file__).resolve().parents[2]


def test_make_bench_installs_dynamodb_local_before_running() -> None:
    dry = subprocess.run(
        ["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout.splitlines()
    installer = [i for i, line in enumerate(dry) if "infra/tools/dynamodb-local.sh" in line]
    bench = [i for i, line in enumerate(dry) if "-m tests.bench" in line]
    assert installer, dry
    assert bench, dry
    assert installer[0] < bench[0], dry


@pytest.mark.slow  # DynamoDB Local
def test_bench_stdout_is_only_result_lines() -> None:
    # 101 turns: past the 100 values at which Powertools prints an EMF blob by itself.
    env = {**os.environ, "BENCH_TURNS": "101"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--only", "conversation"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr[-3000:]
    for line in lines:
        result = json.loads(line)
        assert set(REQUIRED) <= set(result), line[:300]
        assert result["name"].startswith("conversation."), line[:300]
