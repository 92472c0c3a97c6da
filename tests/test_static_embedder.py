"""The light static model (extra ``light``): the contract, its spec, the CLI picking it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmembed import Image, Task, UnsupportedMediaError
from mmembed.cli import ExitCode, main
from mmembed.embedders.static import StaticEmbedder, static_model_available
from mmembed.index import choose_embedder
from mmembed.protocols import Embedder
from mmembed.registry import build_embedder, to_spec
from mmembed.testing.contracts import EmbedderContract
from mmembed.testing.media import make_image

pytestmark = pytest.mark.skipif(
    not static_model_available(), reason='needs the light extra: pip install "mmembed[light]"'
)


class TestStaticEmbedder(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> Embedder:
        return StaticEmbedder()


def test_related_text_is_nearer_than_unrelated_text() -> None:
    embedder = StaticEmbedder()
    q, near, far = embedder.embed(
        ["mitochondria energy", "The mitochondria make the cell's energy", "Rome has seven hills"],
        task=Task.QUERY,
    )
    assert float(q @ near) > float(q @ far)
    assert np.allclose(np.linalg.norm(embedder.embed(["a", "b c"]), axis=1), 1.0, atol=1e-5)


def test_spec_round_trip_through_the_registry() -> None:
    spec = to_spec(StaticEmbedder())
    assert spec == {"kind": "static", "model": "tokenlearn-static-model"}
    rebuilt = build_embedder(spec)
    assert isinstance(rebuilt, StaticEmbedder)
    assert rebuilt.dimensions == 64


def test_media_are_refused_with_the_file_name_and_the_gemini_way() -> None:
    with pytest.raises(UnsupportedMediaError, match=r"<\d+ bytes>: the static model .* Gemini"):
        StaticEmbedder().embed([Image(make_image("PNG", (16, 16)), "image/png")])


def test_the_cli_makes_a_light_index_by_name_and_searches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "set")  # a named static model wins over the key
    embedder, note = choose_embedder(model="tokenlearn-static-model")
    assert isinstance(embedder, StaticEmbedder)
    assert "light static model" in note
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "krebs.md").write_text("The Krebs cycle runs in the mitochondria of the cell.")
    (notes / "rome.md").write_text("Rome was built on seven hills beside the river Tiber.")
    ix = str(tmp_path / "ix")
    code = main(["index", str(notes), "--index", ix, "--model", "tokenlearn-static-model", "-q"])
    assert code == ExitCode.OK
    capsys.readouterr()
    code = main(["search", "Krebs cycle mitochondria", "--index", ix, "--json", "-k", "1"])
    hits = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert hits[0]["source"].endswith("krebs.md")
