"""The shape of the Gemini package: its public names, and where the SDK's private parts are used."""

from __future__ import annotations

import re
from pathlib import Path

import mmembed.embedders.gemini as gemini

PACKAGE = Path(gemini.__file__).parent
# attributes of google-genai's private structure that the package relies on
PRIVATE_SDK = re.compile(r"\b_(api_client|aiohttp_sessions|async_httpx_client|loop_clients\w*)\b")


def test_the_public_names_stay_importable_from_the_package() -> None:
    assert gemini.__all__ == [
        "TASK_PREFIXES",
        "TASK_TYPES",
        "EmbeddingUsage",
        "GeminiEmbedder",
        "apply_task",
    ]
    for name in gemini.__all__:
        assert getattr(gemini, name) is not None
    from mmembed.embedders import EmbeddingUsage, GeminiEmbedder

    assert GeminiEmbedder is gemini.GeminiEmbedder
    assert EmbeddingUsage is gemini.EmbeddingUsage


def test_only_the_transport_touches_private_parts_of_the_sdk() -> None:
    users = sorted(
        path.name for path in PACKAGE.glob("*.py") if PRIVATE_SDK.search(path.read_text("utf-8"))
    )
    assert users == ["_transport.py"]
