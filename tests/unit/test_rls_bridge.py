"""The bridge routes' reading of gRPC's deadline header (the routes themselves are
tests/integration/test_rls_grpc.py's, on a real replica)."""

from __future__ import annotations

import pytest

from rls import bridge


def test_grpc_timeout_headers_give_the_deadline() -> None:
    """grpc-timeout's units read as gRPC defines them; absent or malformed: none."""
    assert bridge.grpc_timeout_seconds("20m") == pytest.approx(0.02)
    assert bridge.grpc_timeout_seconds("19999u") == pytest.approx(0.019999)
    assert bridge.grpc_timeout_seconds("1S") == 1.0
    assert bridge.grpc_timeout_seconds("2H") == 7200.0
    for bad in (None, "", "20", "ms", "123456789m", "-1m"):
        assert bridge.grpc_timeout_seconds(bad) is None
