"""MilvusStore against Milvus Lite: the Milvus engine itself, run from a local file."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from mmembed.errors import ConfigurationError, DimensionMismatchError, StoreError
from mmembed.protocols import VectorStore
from mmembed.registry import build_store, store_class
from mmembed.stores import MilvusStore
from mmembed.stores.milvus import (
    MAX_ID_BYTES,
    MAX_K,
    TERMS_FIELD,
    TOKEN_ENV,
    expression_string,
    term_token,
)
from mmembed.testing.contracts.store import MakeStore, VectorStoreContract, random_vectors

_names = itertools.count()


@pytest.fixture(scope="module")
def lite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilvusStore]:
    """One Milvus Lite server for the module (starting one takes a second); each store below
    gets a collection of its own on it."""
    first = MilvusStore(4, str(tmp_path_factory.mktemp("milvus") / "test.db"), collection="first")
    yield first
    first.close()


def _fresh(lite: MilvusStore, dimensions: int) -> MilvusStore:
    return MilvusStore(dimensions, collection=f"c{next(_names)}", client=lite.client)


class TestMilvusStoreContract(VectorStoreContract):
    """The shared store contract, on Milvus Lite."""

    # Milvus persists by itself: there is no save/load of mmembed's format to test; reopening a
    # file is tested below
    persistent = False

    @pytest.fixture
    def make_store(self, lite: MilvusStore) -> MakeStore:
        return lambda dimensions: _fresh(lite, dimensions)

    @pytest.mark.xfail(
        reason="Milvus indexes whole vectors and cannot score a prefix of them; "
        "MilvusStore.shrink builds a prefix collection instead (tested below)",
        raises=ConfigurationError,
    )
    def test_search_at_prefix_equals_brute_force(self, filled: tuple[Any, np.ndarray]) -> None:
        super().test_search_at_prefix_equals_brute_force(filled)


@pytest.fixture
def store(lite: MilvusStore) -> MilvusStore:
    return _fresh(lite, 8)


def test_is_a_vector_store(store: MilvusStore) -> None:
    typed: VectorStore = store  # mypy checks the protocol here
    assert typed.dimensions == 8
    assert len(store) == 0


# -- ids ------------------------------------------------------------------------------------------

HOSTILE = [
    'a", "b',  # would close the literal and add a second id
    "a', 'b",  # the same with the quotes pymilvus itself uses
    'x" or id != "',  # would widen the expression to every row
    "back\\slash",
    "ends with a backslash \\",
    '\\"',
    "tab\tand\x01control",
    "unicode é ✓ 😀",
    "",  # never stored; looked up, it is simply absent
]


def test_hostile_ids_match_only_themselves(store: MilvusStore) -> None:
    plain = ["a", "b", "x"]
    hostile = [i for i in HOSTILE if i]
    ids = plain + hostile
    store.add(ids, random_vectors(len(ids), 8, seed=1), [{"n": n} for n in range(len(ids))])
    assert sorted(store) == sorted(ids)
    for n, id_ in enumerate(ids):
        assert id_ in store
        [record] = store.get([id_])
        assert (record.id, record.metadata["n"]) == (id_, n)
    assert [r.id for r in store.get(["", "nope", 'a", "b'])] == ['a", "b']
    # each delete removes exactly its own id
    for id_ in hostile:
        assert store.delete([id_]) == 1
        assert id_ not in store
    assert sorted(store) == plain
    assert store.delete(HOSTILE) == 0


def test_id_length_limit_is_utf8_bytes(store: MilvusStore) -> None:
    longest = "i" * MAX_ID_BYTES
    store.add([longest], np.ones((1, 8)))
    assert [r.id for r in store.get([longest])] == [longest]
    assert store.delete([longest]) == 1
    # 40,000 characters, 80,000 bytes
    with pytest.raises(ConfigurationError, match=r"80,000 bytes.*at most 65,535"):
        store.add(["é" * 40_000], np.ones((1, 8)))
    with pytest.raises(ConfigurationError, match="at most 65,535"):
        store.add(["ok", "i" * (MAX_ID_BYTES + 1)], np.ones((2, 8)))
    assert len(store) == 0  # nothing half-added


def test_ids_with_line_breaks_are_refused_and_never_found(store: MilvusStore) -> None:
    for bad in ("two\nlines", "carriage\rreturn"):
        with pytest.raises(ConfigurationError, match="line break"):
            store.add([bad], np.ones((1, 8)))
        assert bad not in store
        assert store.get([bad]) == []
        assert store.delete([bad]) == 0
    with pytest.raises(ConfigurationError, match="line break"):
        expression_string("a\nb")


def test_expression_strings_escape_quotes_and_backslashes() -> None:
    assert expression_string('say "hi"') == '"say \\"hi\\""'
    assert expression_string("C:\\dir\\") == '"C:\\\\dir\\\\"'
    assert expression_string("é'") == '"é\'"'


# -- where ----------------------------------------------------------------------------------------


def test_where_with_hostile_strings(store: MilvusStore) -> None:
    e = np.eye(8, dtype=np.float32)
    values = [v for v in HOSTILE if v] + ["line\nbreak", "crlf\r\n"]
    store.add([f"v{i}" for i in range(len(values))], e[np.arange(len(values)) % 8],
              [{"s": v, "tags": [v, "common"]} for v in values])  # fmt: skip
    for i, value in enumerate(values):
        assert [h.id for h in store.search(np.ones(8), k=50, where={"s": value})] == [f"v{i}"]
        assert [h.id for h in store.search(np.ones(8), k=50, where={"tags": value})] == [f"v{i}"]
        # the user's key is hashed too: a hostile key is just a key
        assert store.search(np.ones(8), k=50, where={value or "k": "missing"}) == []
    assert len(store.search(np.ones(8), k=50, where={"tags": "common"})) == len(values)


def test_where_with_numbers_none_and_mixed_lists(store: MilvusStore) -> None:
    e = np.eye(8, dtype=np.float32)
    ids = ["a", "b", "c", "d", "one", "one.0", "true", "big"]
    store.add(
        ids,
        e[np.arange(len(ids)) % 8],
        [
            {"t": 1.5},
            {"t": 2.5},
            {"t": None},
            {"t": "x"},
            {"t": 1},
            {"t": 1.0},
            {"t": True},
            {"t": 2**53 + 1},
        ],
    )
    q = np.ones(8)

    def found(where: dict[str, Any]) -> set[str]:
        return {h.id for h in store.search(q, k=20, where=where)}

    # numbers compare as numbers (1 == 1.0) but booleans stay apart, as in InMemoryStore
    assert found({"t": 1}) == {"one", "one.0"}
    assert found({"t": [1.0, 2.5]}) == {"one", "one.0", "b"}
    assert found({"t": True}) == {"true"}
    assert found({"t": None}) == {"c"}
    assert found({"t": [2.5, "x", None, False]}) == {"b", "d", "c"}
    # exactly, as Python compares them: 2**53 + 1 is not the float 2**53
    assert found({"t": 2**53 + 1}) == {"big"}
    assert found({"t": float(2**53)}) == set()
    assert found({"t": []}) == set()
    assert found({"missing": "x"}) == set()


def test_terms_are_hashes_of_key_and_typed_value() -> None:
    assert term_token("k", 1) == term_token("k", 1.0)
    assert term_token("k", 1) != term_token("k", True)
    assert term_token("k", 0) != term_token("k", False)
    assert term_token("k", "1") != term_token("k", 1)
    assert term_token("k", None) != term_token("k", "null")
    assert term_token("a", "b") != term_token("b", "a")
    assert len(term_token("k", "\ud800")) == 32  # any text, even what UTF-8 cannot encode


def test_metadata_round_trips_as_milvus_json(store: MilvusStore) -> None:
    meta = {"source": "a.mp4", "start": 1.5, "tags": ["x", "y"], "nested": {"k": None}, "u": 2**63}
    store.add(["a"], np.ones((1, 8)), [meta])
    [hit] = store.search(np.ones(8), k=1)
    assert dict(hit.metadata) == meta
    [row] = store.client.query(store.collection, filter='id == "a"', output_fields=["metadata"])
    assert row["metadata"] == meta  # other Milvus tools read the metadata as it was given
    with pytest.raises(ConfigurationError, match="beyond 64 bits"):
        store.add(["b"], np.ones((1, 8)), [{"n": [1, {"deep": 2**70}]}])


# -- search ---------------------------------------------------------------------------------------


def test_k_beyond_milvus_limit(store: MilvusStore) -> None:
    store.add(["a", "b"], np.eye(8)[:2])
    # more than the store holds: every hit, as in the other stores
    assert len(store.search(np.ones(8), k=MAX_K + 1)) == 2
    small = MilvusStore(2, collection=f"c{next(_names)}", client=store.client)
    small.add([f"i{i}" for i in range(MAX_K + 1)], random_vectors(MAX_K + 1, 2, seed=3))
    with pytest.raises(ConfigurationError, match="at most 16,384 hits"):
        small.search(np.ones(2), k=MAX_K + 1)
    assert len(small.search(np.ones(2), k=MAX_K)) == MAX_K


def test_search_batch_spans_several_requests(store: MilvusStore) -> None:
    vectors = random_vectors(300, 8, seed=4)
    store.add([str(i) for i in range(300)], vectors)
    batch = store.search_batch(vectors, k=1)  # more rows than one request carries
    assert [hits[0].id for hits in batch] == [str(i) for i in range(300)]


def test_iteration_and_clear_past_one_page(store: MilvusStore) -> None:
    ids = [f"i{i}" for i in range(2500)]
    store.add(ids, random_vectors(2500, 8, seed=5))
    assert sorted(store) == sorted(ids)
    assert len(store) == 2500
    assert store.delete(ids[:1500]) == 1500  # more ids than one lookup expression holds
    assert len(store) == 1000
    store.clear()
    assert len(store) == 0
    assert list(store) == []


# -- Matryoshka -----------------------------------------------------------------------------------


def test_shrink_makes_a_prefix_collection_and_prefix_search_is_refused(lite: MilvusStore) -> None:
    # what shrink keeps is the contract's; here: where the prefix goes, and what is refused
    store = MilvusStore(16, collection=f"full{next(_names)}", client=lite.client)
    store.add(["a", "b"], random_vectors(2, 16, seed=5))
    assert store.shrink(4).collection == f"{store.collection}_4"
    with pytest.raises(StoreError, match="already holds"):
        store.shrink(4)
    with pytest.raises(ConfigurationError, match=r"store\.shrink\(4\)"):
        store.search(np.ones(16), dimensions=4)
    assert len(store.search(np.ones(16), dimensions=16)) == 2


# -- files, collections, specs --------------------------------------------------------------------


def test_a_lite_file_persists_and_reopens(tmp_path: Path) -> None:
    where = str(tmp_path / "vectors.db")
    with MilvusStore(4, where) as s:
        s.add(["a", "b"], np.eye(4)[:2], [{"k": "v"}, {}])
    with MilvusStore(4, where) as s:  # a new Milvus Lite server on the same file
        assert len(s) == 2
        [hit] = s.search(np.eye(4)[0], k=1)
        assert (hit.id, dict(hit.metadata)) == ("a", {"k": "v"})
        with pytest.raises(DimensionMismatchError, match="4 dimensions"):
            MilvusStore(6, where)
        # two stores on one file share its server; closing one leaves the other working
        other = MilvusStore(4, where, collection="other")
        other.close()
        assert len(s) == 2
    with pytest.raises(StoreError, match="closed"):
        len(s)


def test_a_collection_not_made_by_milvus_store_is_refused(store: MilvusStore) -> None:
    from pymilvus import DataType

    client = store.client
    schema = client.create_schema(auto_id=True)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
    client.create_collection("foreign", schema=schema)
    with pytest.raises(StoreError, match="not made by MilvusStore"):
        MilvusStore(4, collection="foreign", client=client)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="needs a uri"):
        MilvusStore(4)
    with pytest.raises(ConfigurationError, match=r"ends in \.db"):
        MilvusStore(4, str(tmp_path / "vectors"))
    with pytest.raises(ConfigurationError, match="does not exist"):
        MilvusStore(4, str(tmp_path / "missing" / "vectors.db"))
    with pytest.raises(ConfigurationError, match="token"):
        MilvusStore(4, str(tmp_path / "vectors.db"), token="secret")
    with pytest.raises(ConfigurationError, match="32,768"):
        MilvusStore(40_000, str(tmp_path / "vectors.db"))
    with pytest.raises(ConfigurationError, match="collection"):
        MilvusStore(4, str(tmp_path / "vectors.db"), collection="")
    assert not (tmp_path / "vectors.db").exists()


def test_spec_round_trip_and_registry(tmp_path: Path) -> None:
    assert store_class("milvus") is MilvusStore
    where = str(tmp_path / "vectors.db")
    with MilvusStore(8, where, collection="docs", timeout=30) as s:
        s.add(["a"], np.ones((1, 8)), [{"k": 1}])
        spec = s.to_spec()
        assert spec == {
            "kind": "milvus",
            "dimensions": 8,
            "uri": where,
            "collection": "docs",
            "timeout": 30,
        }
        with pytest.raises(ConfigurationError, match="client="):
            MilvusStore(8, collection="x", client=s.client).to_spec()
    with build_store(spec) as reopened:  # Milvus persists by itself: the rows are there
        assert [h.id for h in reopened.search(np.ones(8))] == ["a"]
        assert "docs" in repr(reopened)
    for bad in (
        {"kind": "milvus", "dimensions": 8},
        {"kind": "milvus", "dimensions": 8, "uri": 5},
        {"kind": "milvus", "dimensions": 8, "uri": where, "token": "secret"},  # never in a spec
    ):
        with pytest.raises(ConfigurationError):
            build_store(bad)


class _Recorder:
    """A gRPC server on 127.0.0.1 that records the metadata of every call and refuses it."""

    def __init__(self) -> None:
        import grpc

        self.metadata: list[tuple[str, str | bytes]] = []
        recorder = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                recorder.metadata.extend(details.invocation_metadata)

                def refuse(request: bytes, context: Any) -> bytes:
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "recorded")
                    return b""

                return grpc.unary_unary_rpc_method_handler(refuse)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_a_servers_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _Recorder()
    try:
        spec = {"kind": "milvus", "dimensions": 8, "uri": f"http://127.0.0.1:{recorder.port}"}
        monkeypatch.setenv(TOKEN_ENV, "user:from-the-environment")
        with pytest.raises(StoreError, match="cannot open Milvus"):
            build_store(spec)
    finally:
        recorder.server.stop(grace=None)
    sent = dict(recorder.metadata)
    assert sent["authorization"] == base64.b64encode(b"user:from-the-environment").decode()
    with pytest.raises(ConfigurationError):
        build_store({**spec, "token": "in the spec"})


def test_repr_hides_the_token(store: MilvusStore) -> None:
    assert store.collection in repr(store)
    assert "token" not in repr(store).lower()


def test_the_terms_field_is_what_filters_read(store: MilvusStore) -> None:
    store.add(["a"], np.ones((1, 8)), [{"k": "v", "l": [1, 1.0, True]}])
    [row] = store.client.query(store.collection, filter='id == "a"', output_fields=[TERMS_FIELD])
    assert sorted(row[TERMS_FIELD]["any"]) == sorted(
        {term_token("k", "v"), term_token("l", 1), term_token("l", True)}
    )


def test_an_index_on_milvus_reopens_from_its_spec(tmp_path: Path) -> None:
    from mmembed import Index
    from mmembed.testing import FakeEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cells.md").write_text("The mitochondria is the powerhouse of the cell.\n")
    (docs / "stars.md").write_text("Stars fuse hydrogen into helium in their cores.\n")
    where = str(tmp_path / "vectors.db")
    index = Index(tmp_path / "ix", embedder=FakeEmbedder(32), store=MilvusStore(32, where))
    report = index.add(docs)
    assert (len(report.added), report.failed) == (2, ())
    hits = index.search("Stars fuse hydrogen into helium in their cores.", k=1)
    assert hits[0].source.endswith("stars.md")
    index.close()
    again = Index(tmp_path / "ix")  # the store is rebuilt from the spec index.json keeps
    assert again.info()["store"]["spec"]["kind"] == "milvus"
    assert again.search("The mitochondria is the powerhouse of the cell.", k=1)[0].source.endswith(
        "cells.md"
    )
    again.close()
