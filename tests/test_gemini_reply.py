"""How GeminiEmbedder reads replies, with orjson and with the standard json module."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from mmembed.embedders import GeminiEmbedder
from mmembed.embedders.gemini import _reply as gemini_module
from mmembed.errors import ProviderError
from mmembed.testing import FakeGeminiServer
from mmembed.testing._vectors import fake_vector

orjson = pytest.importorskip("orjson")

DIMS = 128
LOADERS: dict[str, Callable[[str], Any]] = {"orjson": orjson.loads, "json": json.loads}


@pytest.fixture(params=sorted(LOADERS))
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    monkeypatch.setattr(gemini_module, "_json_loads", lambda: LOADERS[name])
    return name


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as s:
        yield s


def make(server: FakeGeminiServer) -> GeminiEmbedder:
    return GeminiEmbedder(
        dimensions=DIMS, client=server.client(), retry_initial_delay=0.01, max_retries=0
    )


def as_text(render: Callable[[list[list[float]]], str]) -> Callable[[dict[str, Any]], str]:
    """A tamper transform that re-renders the answer's vectors with ``render``."""

    def transform(answer: dict[str, Any]) -> str:
        return render([e["values"] for e in answer["embeddings"]])

    return transform


def test_orjson_is_used_when_installed_and_json_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    gemini_module._json_loads.cache_clear()
    try:
        assert gemini_module._json_loads() is orjson.loads
        gemini_module._json_loads.cache_clear()
        monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson now fails
        assert gemini_module._json_loads() is json.loads
    finally:
        monkeypatch.undo()
        gemini_module._json_loads.cache_clear()


def test_both_readers_give_the_same_rows_in_order(server: FakeGeminiServer, loader: str) -> None:
    texts = [f"row {i} about {'cells' if i % 2 else 'rivers'}" for i in range(130)]
    out = make(server).embed(texts)
    expected = np.stack([fake_vector([t], [], DIMS) for t in texts])
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_a_pretty_printed_reply_with_exponents_reads_the_same(
    server: FakeGeminiServer, loader: str
) -> None:
    # Google indents its JSON; numbers may come in exponent form and in float64 precision
    def render(vectors: list[list[float]]) -> str:
        body = {
            "embeddings": [
                {"values": [f"@{v:.8e}@" if i % 2 else f"@{v!r}@" for i, v in enumerate(vec)]}
                for vec in vectors
            ],
            "usageMetadata": {"promptTokenCount": 7},
        }
        return json.dumps(body, indent=2).replace('"@', "").replace('@"', "")

    plain = make(server).embed(["alpha beta", "gamma"])
    server.tamper_next(transform=as_text(render))
    embedder = make(server)
    pretty = embedder.embed(["alpha beta", "gamma"])
    np.testing.assert_allclose(pretty, plain, atol=1e-6)
    assert embedder.last_usage.tokens == 7


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"embeddings": [{"values": [0.1, 0.2', "something that is not JSON"),  # cut short
        ("<html>502 Bad Gateway</html>", "something that is not JSON"),
        ('["not", "an", "object"]', "unexpected JSON"),
        ('{"embeddings": {"values": [0.1]}}', "returned 0 vectors for 1 items"),
    ],
)
def test_a_reply_that_is_not_the_expected_json_is_a_provider_error(
    server: FakeGeminiServer, loader: str, body: str, message: str
) -> None:
    server.tamper_next(transform=lambda answer: body)
    with pytest.raises(ProviderError, match=message):
        make(server).embed(["one"])


def test_non_finite_values_are_a_provider_error(server: FakeGeminiServer, loader: str) -> None:
    def render(vectors: list[list[float]]) -> str:
        rows = [", ".join(["NaN"] + [repr(x) for x in vec[1:]]) for vec in vectors]
        return '{"embeddings": [' + ", ".join(f'{{"values": [{r}]}}' for r in rows) + "]}"

    server.tamper_next(transform=as_text(render))
    # the standard library reads NaN and the finiteness check refuses it; orjson refuses to read
    message = "not JSON" if loader == "orjson" else "non-finite values"
    with pytest.raises(ProviderError, match=message):
        make(server).embed(["one"])


def test_values_that_are_not_numbers_are_a_provider_error(
    server: FakeGeminiServer, loader: str
) -> None:
    def words(answer: dict[str, Any]) -> dict[str, Any]:
        answer["embeddings"][0]["values"] = ["x"] * DIMS
        return answer

    server.tamper_next(transform=words)
    with pytest.raises(ProviderError, match="not numbers for item 0"):
        make(server).embed(["one"])


def test_missing_values_are_a_provider_error(server: FakeGeminiServer, loader: str) -> None:
    server.tamper_next(transform=lambda answer: {"embeddings": [{"vals": [1.0] * DIMS}]})
    with pytest.raises(ProviderError, match="NoneType values for item 0"):
        make(server).embed(["one"])


def test_wrong_counts_and_widths_are_provider_errors(server: FakeGeminiServer, loader: str) -> None:
    server.tamper_next(transform=lambda a: {"embeddings": a["embeddings"] * 2})
    with pytest.raises(ProviderError, match="returned 4 vectors for 2 items"):
        make(server).embed(["one", "two"])

    def widen(answer: dict[str, Any]) -> dict[str, Any]:
        answer["embeddings"][1]["values"] = answer["embeddings"][1]["values"] + [0.5]
        return answer

    server.tamper_next(transform=widen)
    with pytest.raises(ProviderError, match=f"{DIMS + 1} values for item 1, expected {DIMS}"):
        make(server).embed(["one", "two"])
