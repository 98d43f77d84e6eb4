import gc
from collections.abc import Iterator

import pytest

from tests.fixtures.memory import forget_apps

pytest_plugins = ["tests.fixtures.dynamodb", "tests.fixtures.app", "tests.fixtures.sam"]


@pytest.fixture(autouse=True, scope="session")
def _fake_aws_environment() -> Iterator[None]:
    """No test may reach real AWS: fake credentials, a fixed region, no profile. Moto reads its
    streams only with account-id endpoints disabled."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_SECURITY_TOKEN", "testing")
        mp.setenv("AWS_SESSION_TOKEN", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
        yield


@pytest.fixture(autouse=True, scope="module")
def _settled_heap() -> None:
    """Before each module: collect what the modules before it left, and freeze what survives (the
    imports, the session's fixtures), so that the collector walks only what this module makes
    (see tests.fixtures.memory)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _forget_apps() -> Iterator[None]:
    """Let each test's app go when it ends (see tests.fixtures.memory)."""
    yield
    forget_apps()
    gc.collect()  # this test's garbage, now, rather than a pause inside a later test's timing
