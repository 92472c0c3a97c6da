"""A local stand-in for the Gemini embedding API (see :class:`FakeGeminiServer`).

The package is cut along the seams of one request: ``_http`` routes it (faults, latency, the
rate limit), ``_embedding`` answers embedding calls, ``_files`` the Files API, ``_wire`` holds
what they share (routes, error bodies, the request record), and ``_server`` is the public class.
"""

from __future__ import annotations

from mmembed.testing._fake_gemini._server import FakeGeminiServer, FakeGeminiUsage
from mmembed.testing._fake_gemini._wire import RecordedRequest

__all__ = ["FakeGeminiServer", "FakeGeminiUsage", "RecordedRequest"]
