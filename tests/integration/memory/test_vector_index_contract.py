"""One contract, three vector backends: every test runs on sqlite, pgvector (the suite's own
PostgreSQL 16 + pgvector) and chroma (embedded, in tmp_path).

The contract is the docstring of ``carrier.memory.vectors.base``.  Vectors are random unit
vectors; the expected answers come from exact (numpy) cosine search over the same vectors.
"""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from carrier.memory.vectors.base import Hit, VectorIndex, VectorItem
from carrier.store.database import Database, create_engine
from carrier.store.migrate import upgrade

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HAVE_CHROMA = importlib.util.find_spec("chromadb") is not None

DIM = 32
MODEL = "test-model"

OpenIndex = Callable[[], Awaitable[VectorIndex]]


def _chroma_param() -> object:
    if HAVE_CHROMA or IN_CI:
        return pytest.param("chroma")
    return pytest.param(
        "chroma",
        marks=pytest.mark.skip(reason="chromadb is not installed (pip install -e '.[test]')"),
    )


BACKENDS = [
    pytest.param("sqlite"),
    pytest.param("pgvector", marks=pytest.mark.postgres),
    _chroma_param(),
]


async def _create_postgres_database(server_uri: str) -> tuple[str, Callable[[], Awaitable[None]]]:
    """A fresh database on the suite's server: (asyncpg URL, drop)."""
    import asyncpg

    host = server_uri.split("host=", 1)[1]
    name = "v_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(user="postgres", database="postgres", host=host)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()

    async def drop() -> None:
        admin = await asyncpg.connect(user="postgres", database="postgres", host=host)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()

    return f"postgresql+asyncpg://postgres@/{name}?host={host}", drop


@pytest.fixture(params=BACKENDS)
async def open_index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenIndex]:
    """Opens a new index instance over the same storage each time it is called (as a second
    process would); every instance is closed at the end."""
    name = str(request.param)
    opened: list[VectorIndex] = []
    databases: list[Database] = []
    drop: Callable[[], Awaitable[None]] | None = None

    if name == "chroma":
        from carrier.memory.vectors.chroma_index import ChromaVectorIndex

        async def open_chroma() -> VectorIndex:
            index = ChromaVectorIndex(tmp_path / "chroma")
            opened.append(index)
            return index

        opener: OpenIndex = open_chroma
    else:
        if name == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp_path / 'vectors.db'}"
        else:
            url, drop = await _create_postgres_database(request.getfixturevalue("postgres_server"))
        first = Database(create_engine(url))
        await upgrade(first)
        databases.append(first)

        async def open_in_database() -> VectorIndex:
            database = Database(create_engine(url))
            databases.append(database)
            index: VectorIndex
            if name == "sqlite":
                from carrier.memory.vectors.sqlite_index import SQLiteVectorIndex

                index = SQLiteVectorIndex(database)
            else:
                from carrier.memory.vectors.pgvector_index import PgVectorIndex

                index = PgVectorIndex(database)
            opened.append(index)
            return index

        opener = open_in_database
    yield opener
    for index in opened:
        await index.aclose()
    for database in databases:
        await database.dispose()
    if drop is not None:
        await drop()


@pytest.fixture
async def index(open_index: OpenIndex) -> VectorIndex:
    return await open_index()


def unit_vectors(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def items_of(
    vectors: np.ndarray,
    *,
    start: int = 1,
    agent_id: str = "fish",
    user_id: str | Callable[[int], str] = "u1",
    guild_id: str | Callable[[int], str | None] | None = "g1",
    model: str = MODEL,
) -> list[VectorItem]:
    items = []
    for offset, vector in enumerate(vectors):
        fact_id = start + offset
        items.append(
            VectorItem(
                id=fact_id,
                agent_id=agent_id,
                user_id=user_id(fact_id) if callable(user_id) else user_id,
                guild_id=guild_id(fact_id) if callable(guild_id) else guild_id,
                model=model,
                vector=vector,
            )
        )
    return items


def exact_top(vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int) -> list[int]:
    scores = vectors @ (query / np.linalg.norm(query))
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[i] for i in order]


def ids_of(hits: list[Hit]) -> list[int]:
    return [hit.id for hit in hits]


# --- nearest neighbours and scores ----------------------------------------------------------


async def test_the_exact_nearest_neighbours_are_found(index: VectorIndex) -> None:
    rng = np.random.default_rng(1)
    vectors = unit_vectors(rng, 300)
    await index.upsert(items_of(vectors))
    ids = list(range(1, 301))

    for source in rng.choice(300, size=20, replace=False):
        query = vectors[source] + 0.05 * unit_vectors(rng, 1)[0]
        hits = await index.search("fish", query, 5, model=MODEL)
        expected = exact_top(vectors, ids, query, 5)
        assert hits[0].id == int(source) + 1
        assert ids_of(hits) == expected
        exact_scores = vectors[[e - 1 for e in expected]] @ (query / np.linalg.norm(query))
        assert [h.score for h in hits] == pytest.approx(exact_scores.tolist(), abs=1e-4)


async def test_scores_are_cosine_similarities_best_first(index: VectorIndex) -> None:
    rng = np.random.default_rng(2)
    vectors = unit_vectors(rng, 60)
    await index.upsert(items_of(vectors))

    hits = await index.search("fish", vectors[7], 10, model=MODEL)

    assert hits[0] == Hit(8, pytest.approx(1.0, abs=1e-5))
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    opposite = await index.search("fish", -vectors[7], 60, model=MODEL)
    assert opposite[-1].id == 8
    assert opposite[-1].score == pytest.approx(-1.0, abs=1e-5)


async def test_a_vector_of_any_length_is_normalised(index: VectorIndex) -> None:
    rng = np.random.default_rng(3)
    vectors = unit_vectors(rng, 20)
    await index.upsert(items_of(vectors * 7.5))

    hits = await index.search("fish", vectors[3] * 0.01, 1, model=MODEL)

    assert hits == [Hit(4, pytest.approx(1.0, abs=1e-5))]


# --- filters ----------------------------------------------------------------------------


async def test_search_is_scoped_to_the_agent(index: VectorIndex) -> None:
    rng = np.random.default_rng(4)
    fish, salmon = unit_vectors(rng, 30), unit_vectors(rng, 30)
    await index.upsert(items_of(fish, start=1, agent_id="fish"))
    await index.upsert(items_of(salmon, start=101, agent_id="salmon"))

    fish_hits = await index.search("fish", salmon[0], 30, model=MODEL)
    salmon_hits = await index.search("salmon", salmon[0], 30, model=MODEL)

    assert set(ids_of(fish_hits)) == set(range(1, 31))
    assert set(ids_of(salmon_hits)) == set(range(101, 131))
    assert salmon_hits[0].id == 101
    assert await index.search("nobody", salmon[0], 5, model=MODEL) == []


async def test_filters_by_user_and_guild(index: VectorIndex) -> None:
    rng = np.random.default_rng(5)
    vectors = unit_vectors(rng, 90)
    users = {i: f"u{i % 3}" for i in range(1, 91)}
    guilds: dict[int, str | None] = {
        i: (None if i % 5 == 0 else ("g1" if i % 2 else "g2")) for i in range(1, 91)
    }
    await index.upsert(items_of(vectors, user_id=users.__getitem__, guild_id=guilds.__getitem__))
    ids = list(range(1, 91))
    query = unit_vectors(rng, 1)[0]

    def expected(keep: Callable[[int], bool], k: int) -> list[int]:
        chosen = [i for i in ids if keep(i)]
        return exact_top(vectors[[i - 1 for i in chosen]], chosen, query, k)

    by_user = await index.search("fish", query, 10, model=MODEL, user_id="u1")
    assert ids_of(by_user) == expected(lambda i: users[i] == "u1", 10)

    in_g1 = await index.search("fish", query, 10, model=MODEL, guild_ids=["g1"])
    assert ids_of(in_g1) == expected(lambda i: guilds[i] == "g1", 10)

    no_guild = await index.search("fish", query, 50, model=MODEL, guild_ids=[None])
    assert ids_of(no_guild) == expected(lambda i: guilds[i] is None, 50)
    assert len(no_guild) == 18

    g2_or_none = await index.search(
        "fish", query, 10, model=MODEL, user_id="u2", guild_ids=["g2", None]
    )
    assert ids_of(g2_or_none) == expected(
        lambda i: users[i] == "u2" and guilds[i] in ("g2", None), 10
    )

    any_guild = await index.search("fish", query, 90, model=MODEL, guild_ids=None)
    assert len(any_guild) == 90
    assert await index.search("fish", query, 10, model=MODEL, guild_ids=[]) == []
    assert await index.search("fish", query, 10, model=MODEL, guild_ids=["g9"]) == []
    assert await index.search("fish", query, 10, model=MODEL, user_id="stranger") == []


# --- writes ------------------------------------------------------------------------------


async def test_upsert_overwrites_the_same_id(index: VectorIndex) -> None:
    rng = np.random.default_rng(6)
    first, second = unit_vectors(rng, 2)
    await index.upsert(items_of(unit_vectors(rng, 10)))
    await index.upsert(items_of(first[None, :], start=42))
    await index.upsert(items_of(second[None, :], start=42, user_id="u2", guild_id="g2"))

    assert await index.count("fish") == 11
    hits = await index.search("fish", second, 1, model=MODEL, user_id="u2", guild_ids=["g2"])
    assert hits == [Hit(42, pytest.approx(1.0, abs=1e-5))]
    assert await index.search("fish", first, 11, model=MODEL, user_id="u1", guild_ids=["g1"])
    assert 42 not in ids_of(await index.search("fish", first, 11, model=MODEL, user_id="u1"))


async def test_the_last_of_duplicate_ids_in_a_batch_wins(index: VectorIndex) -> None:
    rng = np.random.default_rng(7)
    a, b = unit_vectors(rng, 2)
    await index.upsert(items_of(a[None, :], start=5) + items_of(b[None, :], start=5))

    assert await index.count("fish") == 1
    assert (await index.search("fish", b, 1, model=MODEL))[0].score == pytest.approx(1.0, abs=1e-5)


async def test_delete_removes_vectors_and_ignores_unknown_ids(index: VectorIndex) -> None:
    rng = np.random.default_rng(8)
    vectors = unit_vectors(rng, 20)
    await index.upsert(items_of(vectors))

    await index.delete([3, 4, 999])
    await index.delete([3])
    await index.delete([])

    assert await index.count("fish") == 18
    hits = await index.search("fish", vectors[2], 20, model=MODEL)
    assert len(hits) == 18
    assert {3, 4}.isdisjoint(ids_of(hits))


async def test_clear_removes_only_that_agent(index: VectorIndex) -> None:
    rng = np.random.default_rng(9)
    await index.upsert(items_of(unit_vectors(rng, 10), start=1, agent_id="fish"))
    await index.upsert(items_of(unit_vectors(rng, 10), start=11, agent_id="salmon"))

    await index.clear("fish")
    await index.clear("fish")

    assert await index.count("fish") == 0
    assert await index.count("salmon") == 10
    assert await index.search("fish", unit_vectors(rng, 1)[0], 5, model=MODEL) == []
    assert len(await index.search("salmon", unit_vectors(rng, 1)[0], 5, model=MODEL)) == 5


async def test_count_by_agent_and_model(index: VectorIndex) -> None:
    rng = np.random.default_rng(10)
    assert await index.count("fish") == 0
    await index.upsert(items_of(unit_vectors(rng, 7), model="a"))
    await index.upsert(items_of(unit_vectors(rng, 4, dim=DIM * 2), start=100, model="b"))
    await index.upsert(items_of(unit_vectors(rng, 3), start=200, agent_id="salmon", model="a"))

    assert await index.count("fish") == 11
    assert await index.count("fish", "a") == 7
    assert await index.count("fish", "b") == 4
    assert await index.count("fish", "c") == 0
    assert await index.count("salmon") == 3


# --- models and dimensions ----------------------------------------------------------------


async def test_other_models_are_never_compared(index: VectorIndex) -> None:
    rng = np.random.default_rng(11)
    old = unit_vectors(rng, 30, dim=DIM)
    new = unit_vectors(rng, 30, dim=DIM + 8)
    # The same facts under two models, as during `carrier memory reembed`.
    await index.upsert(items_of(old, model="old-model"))
    await index.upsert(items_of(new, model="new-model"))

    old_hits = await index.search("fish", old[4], 30, model="old-model")
    new_hits = await index.search("fish", new[9], 30, model="new-model")

    assert old_hits[0] == Hit(5, pytest.approx(1.0, abs=1e-5))
    assert new_hits[0] == Hit(10, pytest.approx(1.0, abs=1e-5))
    assert len(old_hits) == len(new_hits) == 30
    # A model with nothing stored, of any dimension, finds nothing and raises nothing.
    assert await index.search("fish", unit_vectors(rng, 1, dim=5)[0], 3, model="other") == []
    assert await index.search("fish", old[0], 3, model="other") == []

    await index.delete([5], model="old-model")
    assert 5 not in ids_of(await index.search("fish", old[4], 30, model="old-model"))
    assert (await index.search("fish", new[4], 1, model="new-model"))[0].id == 5

    await index.clear("fish", model="old-model")
    assert await index.count("fish", "old-model") == 0
    assert await index.count("fish", "new-model") == 30


async def test_same_dimension_different_model_stays_apart(index: VectorIndex) -> None:
    rng = np.random.default_rng(12)
    a, b = unit_vectors(rng, 10), unit_vectors(rng, 10)
    await index.upsert(items_of(a, start=1, model="model-a"))
    await index.upsert(items_of(b, start=101, model="model-b"))

    hits = await index.search("fish", b[0], 20, model="model-a")

    assert set(ids_of(hits)) == set(range(1, 11))


# --- edges ---------------------------------------------------------------------------------


async def test_an_empty_index_finds_nothing(index: VectorIndex) -> None:
    rng = np.random.default_rng(13)
    assert await index.search("fish", unit_vectors(rng, 1)[0], 10, model=MODEL) == []
    assert await index.count("fish") == 0
    await index.clear("fish")
    await index.delete([1, 2])
    assert await index.count("fish", MODEL) == 0


async def test_k_larger_than_the_count_returns_everything_ordered(index: VectorIndex) -> None:
    rng = np.random.default_rng(14)
    vectors = unit_vectors(rng, 12)
    await index.upsert(items_of(vectors))
    query = unit_vectors(rng, 1)[0]

    hits = await index.search("fish", query, 500, model=MODEL)

    assert ids_of(hits) == exact_top(vectors, list(range(1, 13)), query, 12)


async def test_writes_persist_for_a_new_instance(open_index: OpenIndex) -> None:
    rng = np.random.default_rng(15)
    vectors = unit_vectors(rng, 25)
    first = await open_index()
    await first.upsert(items_of(vectors))
    await first.delete([25])
    await first.aclose()

    second = await open_index()

    assert await second.count("fish") == 24
    hits = await second.search("fish", vectors[11], 3, model=MODEL)
    assert hits[0] == Hit(12, pytest.approx(1.0, abs=1e-5))


async def test_a_second_instance_sees_the_other_ones_writes(open_index: OpenIndex) -> None:
    """Two processes over one storage: searches see the other's upserts and deletes."""
    rng = np.random.default_rng(16)
    vectors = unit_vectors(rng, 40)
    reader, writer = await open_index(), await open_index()
    await writer.upsert(items_of(vectors[:30]))
    assert len(await reader.search("fish", vectors[0], 40, model=MODEL)) == 30

    await writer.upsert(items_of(vectors[30:], start=31))
    hits = await reader.search("fish", vectors[35], 40, model=MODEL)
    assert len(hits) == 40
    assert hits[0].id == 36

    await writer.delete([36])
    await writer.upsert(items_of(vectors[0:1], start=2))  # id 2 now holds vector 0
    hits = await reader.search("fish", vectors[0], 40, model=MODEL)
    assert 36 not in ids_of(hits)
    assert len(hits) == 39
    assert {h.id for h in hits[:2]} == {1, 2}
    assert hits[1].score == pytest.approx(1.0, abs=1e-5)


async def test_batch_helpers(index: VectorIndex) -> None:
    rng = np.random.default_rng(17)
    vectors = unit_vectors(rng, 50)

    stored = await index.upsert_many(iter(items_of(vectors)), batch_size=7)
    results = await index.search_many("fish", [vectors[0], vectors[49]], 1, model=MODEL)
    await index.delete_many(range(1, 11), batch_size=3)

    assert stored == 50
    assert [ids_of(r) for r in results] == [[1], [50]]
    assert await index.count("fish") == 40
    with pytest.raises(ValueError, match="batch_size"):
        await index.upsert_many(items_of(vectors), batch_size=0)


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ([float("nan")] + [0.1] * (DIM - 1), "NaN or infinite"),
        ([float("inf")] + [0.1] * (DIM - 1), "NaN or infinite"),
        ([0.0] * DIM, "zero length"),
        ([], "empty"),
        ([[0.1, 0.2]], "one-dimensional"),
        (["a", "b"], "numbers"),
    ],
)
async def test_a_bad_vector_is_a_clear_value_error(
    index: VectorIndex, vector: list[float], message: str
) -> None:
    rng = np.random.default_rng(18)
    good = items_of(unit_vectors(rng, 3))
    bad = VectorItem(
        id=99, agent_id="fish", user_id="u1", guild_id=None, model=MODEL, vector=vector
    )

    with pytest.raises(ValueError, match=message):
        await index.upsert([*good, bad])
    with pytest.raises(ValueError, match=message):
        await index.search("fish", vector, 3, model=MODEL)

    # The batch with the bad vector stored nothing.
    assert await index.count("fish") == 0


async def test_a_wrong_dimension_is_a_clear_value_error(index: VectorIndex) -> None:
    rng = np.random.default_rng(19)
    await index.upsert(items_of(unit_vectors(rng, 5)))
    wrong = items_of(unit_vectors(rng, 1, dim=DIM + 1), start=50)

    with pytest.raises(ValueError, match=f"{DIM}-dimensional.*{DIM + 1} dimensions"):
        await index.upsert(wrong)
    with pytest.raises(ValueError, match=f"{DIM}-dimensional.*{DIM + 1} dimensions"):
        await index.search("fish", unit_vectors(rng, 1, dim=DIM + 1)[0], 3, model=MODEL)
    with pytest.raises(ValueError, match="one dimension"):
        await index.upsert(
            items_of(unit_vectors(rng, 1), start=60) + items_of(unit_vectors(rng, 1, 8), start=61)
        )

    assert await index.count("fish") == 5
    # Another agent may use the model name with its own dimension: nothing is compared
    # across agents.
    await index.upsert(items_of(unit_vectors(rng, 2, dim=8), start=70, agent_id="salmon"))
    assert await index.count("salmon") == 2


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
async def test_k_must_be_a_positive_integer(index: VectorIndex, k: object) -> None:
    rng = np.random.default_rng(20)
    with pytest.raises(ValueError, match="k must be"):
        await index.search("fish", unit_vectors(rng, 1)[0], k, model=MODEL)  # type: ignore[arg-type]


async def test_bad_names_are_value_errors(index: VectorIndex) -> None:
    rng = np.random.default_rng(21)
    vector = unit_vectors(rng, 1)[0]
    for item in (
        VectorItem(id=1, agent_id="fish", user_id="u1", guild_id=None, model="", vector=vector),
        VectorItem(id=1, agent_id="", user_id="u1", guild_id=None, model=MODEL, vector=vector),
        VectorItem(id=1, agent_id="fish", user_id="u1", guild_id="", model=MODEL, vector=vector),
        VectorItem(
            id="1", agent_id="fish", user_id="u1", guild_id=None, model=MODEL, vector=vector
        ),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError):
            await index.upsert([item])
    with pytest.raises(ValueError, match="model"):
        await index.search("fish", vector, 1, model="")
    with pytest.raises(ValueError, match="guild_ids"):
        await index.search("fish", vector, 1, model=MODEL, guild_ids="g1")
    assert await index.count("fish") == 0
