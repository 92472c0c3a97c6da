"""The registry: kinds by name, imported lazily, specs that rebuild what they describe."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mmembed import Matryoshka, Modality
from mmembed.cache import CachedEmbedder
from mmembed.errors import ConfigurationError, MissingDependencyError
from mmembed.index import Index
from mmembed.registry import (
    build_embedder,
    build_store,
    embedder_class,
    known_embedders,
    known_stores,
    register_embedder,
    spec_options,
    store_class,
    to_spec,
)
from mmembed.testing import FakeEmbedder

# A third-party package that registers an embedder through the entry point group, installed
# by putting its code and its .dist-info on the path of a fresh interpreter.
_PLUGIN = '''
from typing import Any
from mmembed.testing import FakeEmbedder


class AcmeEmbedder(FakeEmbedder):
    """Stands for a third party's embedder: a fake one under another kind and model."""

    def __init__(self, dimensions: int = 24, *, flavour: str = "plain") -> None:
        super().__init__(dimensions, model=f"acme-{flavour}")
        self.flavour = flavour

    def to_spec(self) -> dict[str, Any]:
        return {"kind": "acme", "dimensions": self.dimensions, "flavour": self.flavour}

    @classmethod
    def from_spec(cls, spec: Any) -> "AcmeEmbedder":
        return cls(spec["dimensions"], flavour=spec["flavour"])
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "acme_embed").mkdir(parents=True)
    (root / "acme_embed" / "__init__.py").write_text(_PLUGIN)
    info = root / "acme_embed-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-embed\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[mmembed.embedders]\nacme = acme_embed:AcmeEmbedder\n")
    return root


def _python(code: str, *, path: Path, cwd: Path) -> str:
    env_path = [str(path), str(Path(__file__).resolve().parents[1])]
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": ":".join(env_path), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_builtin_kinds_are_known_without_importing_them() -> None:
    code = (
        "import sys; from mmembed.registry import known_embedders, known_stores; "
        "print(known_embedders(), known_stores(), 'mmembed.stores.qdrant' in sys.modules, "
        "'mmembed.embedders.local' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'gemini'" in out
    assert "'matryoshka'" in out
    assert "'faiss'" in out
    assert out.strip().endswith("False False")  # listing kinds imported none of them
    assert {"gemini", "local", "matryoshka", "cached", "fake"} <= set(known_embedders())
    assert {"memory", "faiss", "qdrant"} <= set(known_stores())


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown embedder kind 'nope'.*gemini"):
        embedder_class("nope")
    with pytest.raises(ConfigurationError, match="unknown store kind"):
        build_store({"kind": "nope", "dimensions": 3})


def test_a_missing_extra_names_the_install_line() -> None:
    register_embedder("needs-extra", "mmembed_no_such_module:Thing", extra="fancy")
    with pytest.raises(MissingDependencyError, match=r'pip install "mmembed\[fancy\]"'):
        embedder_class("needs-extra")


def test_a_registered_target_that_is_not_a_class_is_refused() -> None:
    register_embedder("a-module", "mmembed.content:Text.__init__")
    with pytest.raises(ConfigurationError, match="not a class"):
        embedder_class("a-module")


def test_a_taken_kind_is_not_replaced_silently() -> None:
    with pytest.raises(ConfigurationError, match="already registered"):
        register_embedder("gemini", "some.module:Other")
    register_embedder("gemini", "mmembed.embedders.gemini:GeminiEmbedder")  # same: fine


def test_classes_can_be_registered_directly() -> None:
    class Mine(FakeEmbedder):
        def to_spec(self) -> dict[str, object]:
            return {"kind": "mine", "dimensions": self.dimensions}

        @classmethod
        def from_spec(cls, spec: object) -> Mine:
            assert isinstance(spec, dict)
            return cls(spec["dimensions"])

    register_embedder("mine", Mine)
    rebuilt = build_embedder(to_spec(Mine(12)))
    assert isinstance(rebuilt, Mine)
    assert rebuilt.dimensions == 12


@pytest.mark.parametrize(
    "embedder",
    [
        FakeEmbedder(32, model="m1"),
        FakeEmbedder(16, modalities=frozenset({Modality.TEXT})),
        Matryoshka(FakeEmbedder(64), 16),
        Matryoshka(Matryoshka(FakeEmbedder(64), 32), 8),
    ],
    ids=["fake", "fake-text-only", "matryoshka", "nested"],
)
def test_specs_round_trip_as_plain_json(embedder: object) -> None:
    spec = to_spec(embedder)
    assert json.loads(json.dumps(spec)) == spec
    rebuilt = build_embedder(spec)
    assert type(rebuilt) is type(embedder)
    assert to_spec(rebuilt) == spec
    items = ["photosynthesis in leaves", "the Krebs cycle"]
    np.testing.assert_allclose(rebuilt.embed(items), embedder.embed(items), atol=1e-6)  # type: ignore[attr-defined]


def test_cached_spec_reopens_the_same_cache(tmp_path: Path) -> None:
    cached = CachedEmbedder(FakeEmbedder(8), tmp_path / "c.sqlite")
    cached.embed(["a", "b"])
    spec = to_spec(cached)
    assert spec == {
        "kind": "cached",
        "path": str(tmp_path / "c.sqlite"),
        "embedder": {"kind": "fake", "dimensions": 8, "model": "fake-embedder"},
    }
    rebuilt = build_embedder(spec)
    rebuilt.embed(["a", "b"])
    assert rebuilt.hits == 2
    assert rebuilt.embedder.calls == []


def test_local_spec_does_not_load_the_model() -> None:
    from mmembed.embedders.local import SentenceTransformerEmbedder

    local = SentenceTransformerEmbedder("some/model-dir", batch_size=8)
    assert to_spec(local) == {"kind": "local", "model": "some/model-dir", "batch_size": 8}
    rebuilt = build_embedder(to_spec(local))
    assert isinstance(rebuilt, SentenceTransformerEmbedder)
    assert rebuilt.model == "some/model-dir"


def test_bad_specs_name_the_problem() -> None:
    with pytest.raises(ConfigurationError, match="unknown flavour"):
        build_embedder({"kind": "fake", "dimensions": 8, "flavour": 1})
    with pytest.raises(ConfigurationError, match="missing dimensions"):
        build_embedder({"kind": "matryoshka", "embedder": {"kind": "fake", "dimensions": 8}})
    with pytest.raises(ConfigurationError, match="no 'kind'"):
        build_embedder({"model": "x"})
    with pytest.raises(ConfigurationError, match="must be a dict"):
        build_embedder("gemini")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not plain JSON"):
        spec_options({"kind": "fake", "dimensions": object()}, "fake", required=("dimensions",))


def test_an_object_without_a_spec_says_how_to_give_it_one() -> None:
    with pytest.raises(ConfigurationError, match="to_spec"):
        to_spec(object())


def test_store_kinds_resolve_lazily() -> None:
    assert store_class("memory").__name__ == "InMemoryStore"


# -- indexes reopen from their specs alone ------------------------------------------------


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "cells.md").write_text("Mitochondria make ATP in the Krebs cycle.")
    (folder / "space.md").write_text("Rockets carry satellites into orbit.")
    return folder


@pytest.mark.parametrize(
    "make",
    [
        lambda d: Matryoshka(FakeEmbedder(64), 16),
        lambda d: CachedEmbedder(FakeEmbedder(16), d / "own-cache.sqlite"),
        lambda d: Matryoshka(CachedEmbedder(FakeEmbedder(64), d / "c.sqlite"), 16),
    ],
    ids=["matryoshka", "cached", "matryoshka-of-cached"],
)
def test_wrapped_embedders_reopen_with_the_path_alone(
    tmp_path: Path, notes: Path, make: object
) -> None:
    embedder = make(tmp_path)  # type: ignore[operator]
    with Index(tmp_path / "ix", embedder=embedder) as index:
        index.add(notes)
        before = index.search("where is ATP made?", k=2)
    with Index(tmp_path / "ix") as reopened:
        assert type(reopened.embedder) is type(embedder)
        assert to_spec(reopened.embedder) == to_spec(embedder)
        after = reopened.search("where is ATP made?", k=2)
        assert [r.chunk_id for r in after] == [r.chunk_id for r in before]
        assert after[0].score == pytest.approx(before[0].score, abs=1e-6)


def test_a_third_party_embedder_from_an_entry_point_reopens_with_the_path_alone(
    tmp_path: Path, notes: Path, plugin_path: Path
) -> None:
    build = f"""
        from acme_embed import AcmeEmbedder
        from mmembed.index import Index
        from mmembed.registry import known_embedders
        assert "acme" in known_embedders()
        with Index({str(tmp_path / "ix")!r}, embedder=AcmeEmbedder(24, flavour="spicy")) as ix:
            ix.add({str(notes)!r})
            print(ix.search("rockets", k=1)[0].chunk_id)
    """
    reopen = f"""
        import sys
        from mmembed.index import Index
        with Index({str(tmp_path / "ix")!r}) as ix:
            assert "acme_embed" not in sys.modules  # imported on first use, not before
            top = ix.search("rockets", k=1)[0].chunk_id
            assert type(ix.embedder).__name__ == "AcmeEmbedder", ix.embedder
            assert ix.embedder.flavour == "spicy"
            print(top)
    """
    first = _python(build, path=plugin_path, cwd=tmp_path)
    second = _python(reopen, path=plugin_path, cwd=tmp_path)
    assert first == second
    assert first.strip()
    # without the package installed, the message says what is missing and how to proceed
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from mmembed.index import Index; Index({str(tmp_path / 'ix')!r}).embedder",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert proc.returncode == 1
    assert "unknown embedder kind 'acme'" in proc.stderr
    assert "entry point" in proc.stderr


def test_a_chunk_option_typo_fails_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "ix"
    with pytest.raises(ConfigurationError, match="sizee"):
        Index(target, embedder=FakeEmbedder(8), chunk_options={"text": {"sizee": 5}})
    assert not target.exists()
    with pytest.raises(ConfigurationError, match="size"):
        Index(target, embedder=FakeEmbedder(8), chunk_options={"text": {"size": -5}})
    with pytest.raises(ConfigurationError, match="per modality"):
        Index(target, embedder=FakeEmbedder(8), chunk_options={"txt": {"size": 5}})
    with pytest.raises(ConfigurationError, match="must be a dict"):
        Index(target, embedder=FakeEmbedder(8), chunk_options={"text": 5})  # type: ignore[dict-item]
    assert not target.exists()
    # and on an existing index, too: the option is named, nothing changes on disk
    Index(target, embedder=FakeEmbedder(8)).close()
    before = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    with pytest.raises(ConfigurationError, match="sizee"):
        Index(target, chunk_options={"video": {"sizee": 5}})
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == before


def test_a_matryoshka_gemini_index_reopens_with_the_path_alone(
    tmp_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmembed.embedders.gemini import GeminiEmbedder
    from mmembed.testing import FakeGeminiServer

    with FakeGeminiServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        embedder = Matryoshka(GeminiEmbedder(dimensions=768, max_retries=2), 256)
        with Index(tmp_path / "ix", embedder=embedder) as index:
            index.add(notes)
            before = index.search("where is ATP made?", k=1)
        calls = len(server.embed_requests)
        with Index(tmp_path / "ix") as reopened:
            assert to_spec(reopened.embedder) == {
                "kind": "matryoshka",
                "dimensions": 256,
                "embedder": {
                    "kind": "gemini",
                    "model": "gemini-embedding-2",
                    "dimensions": 768,
                    "max_retries": 2,
                },
            }
            after = reopened.search("where is ATP made?", k=1)
        assert after[0].chunk_id == before[0].chunk_id
        # the query is answered from the index's cache: nothing was paid twice
        assert len(server.embed_requests) == calls
