"""Values shared by the Gemini tests (the media they need come from mmembed.testing.media)."""

from __future__ import annotations

# shaped like a real key, assembled so that secret scanners do not take it for one
SENTINEL_KEY = "AIza" + "SyD-SENTINEL-0123456789abcdefghijkl"
