"""Run the benchmarks: `python -m tests.bench [--list] [--only NAME ...] [--check]`.

Prints one JSON object per result line: name, value, unit, baseline, ratio (value / baseline) and
whatever else the benchmark reports (target, runs, detail), and nothing else on stdout: progress,
errors and whatever the code under test writes to stdout (Powertools' log lines and the EMF blobs it
prints by itself once 100 metric values pile up, a child process's output) go to stderr.
Exit status: 1 if a benchmark failed, or with --check if a ratio is above its target.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

import tests.bench as package

REQUIRED = ("name", "value", "unit", "baseline")


def discover() -> list[str]:
    """Benchmark module names in tests/bench/ (helpers start with `_`)."""
    return sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if not info.name.startswith("_") and not info.ispkg
    )


def load(name: str) -> Callable[[], Iterable[dict[str, Any]]]:
    module = importlib.import_module(f"{package.__name__}.{name}")
    run = getattr(module, "run", None)
    if not callable(run):
        raise TypeError(f"tests/bench/{name}.py has no run() function")
    return run  # type: ignore[no-any-return]


def finish(result: dict[str, Any], module: str) -> dict[str, Any]:
    """Validate one result and put the standard keys first, `ratio` included."""
    missing = [key for key in REQUIRED if key not in result]
    if missing:
        raise ValueError(f"{module}: result without {', '.join(missing)}: {result!r}")
    value, baseline = float(result["value"]), float(result["baseline"])
    ratio = round(value / baseline, 3) if baseline else None
    head = {key: result[key] for key in REQUIRED}
    return {**head, "ratio": ratio, **{k: v for k, v in result.items() if k not in head}}


def _over_target(result: dict[str, Any]) -> bool:
    target, ratio = result.get("target"), result.get("ratio")
    return target is not None and ratio is not None and ratio > target


def claim_stdout() -> TextIO:
    """Keep the process's stdout for the result lines: the returned stream writes to it, and file
    descriptor 1 (so `sys.stdout`, every handler bound to it and every child that inherits it) goes
    to stderr from now on."""
    sys.stdout.flush()
    results = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    return results


def main(argv: Sequence[str] | None = None, results: TextIO | None = None) -> int:
    out = results if results is not None else sys.stdout
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only NAME (repeatable)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a ratio is above its target")
    args = parser.parse_args(argv)

    names = discover()
    if args.list:
        print("\n".join(names), file=out)
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(names)})")
        names = [name for name in names if name in args.only]

    status = 0
    for name in names:
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            for raw in load(name)():
                result = finish(raw, name)
                print(json.dumps(result), file=out, flush=True)
                if args.check and _over_target(result):
                    print(
                        f"bench: {result['name']} ratio {result['ratio']} > {result['target']}",
                        file=sys.stderr,
                    )
                    status = 1
        except Exception:
            traceback.print_exc()
            print(f"bench: {name} FAILED", file=sys.stderr)
            status = 1
        else:
            print(f"bench: {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(results=claim_stdout()))
