from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Small profile for CI, a larger one for local runs: HYPOTHESIS_PROFILE=dev|ci overrides.
settings.register_profile(
    "ci", max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def _open_files() -> set[str]:
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return set()
    return {f.path for f in psutil.Process().open_files()}


@pytest.fixture(autouse=True)
def no_leaked_files():
    """Fail a test that leaves files open (like nd2's own test suite does)."""
    before = _open_files()
    yield
    # /proc files are read for an instant by monitoring threads (dask.distributed's system
    # monitor, through psutil), which the check may catch mid-read; xafm never opens them
    leaked = {p for p in _open_files() - before if "/site-packages/" not in p and not p.startswith("/proc/") and not p.endswith((".so", ".pyc"))}
    assert not leaked, f"files left open: {sorted(leaked)}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 (tests/servers.py), one for the session: it takes
    about a second to start. Tests make their own buckets (names unique per test)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("moto[server] runs the local S3 server (pip install -e '.[test,remote]')")
    from tests.servers import S3Server

    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()
