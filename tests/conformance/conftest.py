"""The offline samtranslator translation of template.yaml, made once for every conformance module."""

from __future__ import annotations

import json

import pytest

from infra.local.template import load_template
from tests.conformance.test_template import (
    _TRANSLATE,
    SAM_PYTHON,
    Template,
    _explain,
    _require,
    _run,
    _with_s3_code,
)


@pytest.fixture(scope="session")
def translated() -> Template:
    """template.yaml as CloudFormation, translated by the SAM CLI's own samtranslator (offline:
    local CodeUri/ContentUri swapped for s3:// URIs)."""
    _require(SAM_PYTHON)
    proc = _run(
        [SAM_PYTHON, "-c", _TRANSLATE],
        input=json.dumps(_with_s3_code(load_template())),
        env={"AWS_DEFAULT_REGION": "us-east-1"},
        timeout=120,
    )
    assert proc.returncode == 0, _explain(proc)
    result: Template = json.loads(proc.stdout)
    return result
