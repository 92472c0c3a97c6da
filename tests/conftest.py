"""Shared test setup: no real network, a Hypothesis profile, a fake Gemini server, and small
helpers."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from mmembed.testing import FakeGeminiServer

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# `mmembed search` leaves a resident helper behind by default; tests that want one ask for it
# (tests/test_cli_helper.py), the others search in their own process
os.environ["MMEMBED_HELPER"] = "off"

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: Any) -> bool:
    if isinstance(address, str):  # AF_UNIX path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if not _allowed(address):
        raise RuntimeError(
            f"test tried to reach {address!r}: tests may only talk to 127.0.0.1 "
            "(use mmembed.testing.FakeGeminiServer)"
        )
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if not _allowed(address):
        raise RuntimeError(f"test tried to reach {address!r}: tests may only talk to 127.0.0.1")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _no_real_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """Any connection outside loopback fails loudly, except in tests marked ``live``."""
    if request.node.get_closest_marker("live"):
        yield
        return
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _no_ambient_credentials(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tests never see the developer's real key or endpoints unless marked ``live``."""
    if request.node.get_closest_marker("live"):
        return
    for name in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_API_VERSION",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGeminiServer]:
    """A fake Gemini server that the environment (``GEMINI_API_KEY``, the base URL) points at."""
    with FakeGeminiServer() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        yield fake
