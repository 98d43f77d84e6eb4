"""A Lambda cold start imports only what every invocation needs: the model client, the prompt
library's YAML parser, the tokenizer and boto3 load on first use (a health check, an inventory read
or a title-less stream batch never pays for them). Each entry point is imported in a fresh
interpreter, as Lambda's init does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ON_FIRST_USE = ("openai", "yaml", "tiktoken", "boto3")


@pytest.mark.parametrize("entry", ["api", "stream", "titles", "purge"])
def test_an_entry_point_defers_what_only_some_invocations_use(entry: str) -> None:
    script = (
        f"import sys, shelfwise.entry.{entry}\n"
        f"print(','.join(m for m in {ON_FIRST_USE!r} if m in sys.modules))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT / "functions"),
        "SHELFWISE_TABLE_NAME": "cold",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "shelfwise",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"imported at init by shelfwise.entry.{entry}: {done.stdout.strip()}"
