"""The local server flushes metrics after each request, as Lambda's `log_metrics` does after each
invocation: one EMF line for a request that added metrics, nothing (and no Powertools warning in
`make run`'s output) for one that added none."""

from __future__ import annotations

import json
import warnings

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from infra.local.api_routes import ApiRoutes
from infra.local.flush_metrics import FlushMetrics
from shelfwise.observability import metrics


def _counted(_: Request) -> PlainTextResponse:
    metrics.add_metric(name="LocalFlushProbe", unit="Count", value=1)
    return PlainTextResponse("counted")


def _quiet(_: Request) -> PlainTextResponse:
    return PlainTextResponse("quiet")


def test_a_request_flushes_what_it_added_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shelfwise")
    metrics.clear_metrics()
    app = Starlette(routes=[Route("/counted", _counted), Route("/health", _quiet)])
    client = TestClient(FlushMetrics(app, ApiRoutes.from_template()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.get("/health").text == "quiet"
        assert client.get("/counted").text == "counted"
        assert client.get("/health").text == "quiet"
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [sum(blob["LocalFlushProbe"]) for blob in emf] == [1]
