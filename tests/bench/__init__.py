"""Benchmarks, run with `make bench` (`python -m tests.bench`).

Every public module here exposes `run() -> Iterable[dict]`; each dict is one result with at least
`name`, `value`, `unit` and `baseline` (a comparable measurement taken in the same run), optionally
`target` (the highest acceptable value/baseline), `runs` and `detail`. The runner adds `ratio` and
prints one JSON object per line. Modules whose names start with `_` are helpers, not benchmarks.
"""
