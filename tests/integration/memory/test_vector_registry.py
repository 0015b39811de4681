"""Choosing the vector backend from settings: by database unless set, lazily imported."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carrier.memory.vectors.registry import BACKENDS, backend_class, create_vector_index
from carrier.memory.vectors.sqlite_index import SQLiteVectorIndex
from carrier.settings import ConfigError, Settings, VectorSettings, load_settings
from carrier.store.database import create_engine
from carrier.store.migrate import upgrade
from carrier.store.store import Store

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_chroma() -> None:
    """Skip without chromadb, except under CI, where the test extra must have installed it."""
    if importlib.util.find_spec("chromadb") is None and not IN_CI:
        pytest.skip("chromadb is not installed (pip install -e '.[test]')")


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[tuple[str, Store]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'carrier.db'}"
    engine = create_engine(url)
    await upgrade(engine)
    store = Store(engine)
    yield url, store
    await store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///./data/carrier.db", "sqlite"),
        ("postgresql+asyncpg://bot@db/carrier", "pgvector"),
        ("postgresql://bot@db/carrier", "pgvector"),
        ("postgres://bot@db/carrier", "pgvector"),
    ],
)
def test_the_default_backend_follows_the_database(url: str, expected: str) -> None:
    assert VectorSettings().backend_for(url) == expected
    assert VectorSettings(backend="chroma").backend_for(url) == "chroma"


async def test_sqlite_settings_build_the_sqlite_index(sqlite_store: tuple[str, Store]) -> None:
    url, store = sqlite_store
    index = create_vector_index(Settings(DATABASE_URL=url), store)
    try:
        assert isinstance(index, SQLiteVectorIndex)
        assert await index.count("fish") == 0
    finally:
        await index.aclose()


async def test_a_backend_that_does_not_fit_the_database_is_refused(
    sqlite_store: tuple[str, Store],
) -> None:
    url, store = sqlite_store
    settings = Settings(DATABASE_URL=url, vectors=VectorSettings(backend="pgvector"))
    with pytest.raises(ValueError, match="'pgvector' keeps vectors in a postgresql database"):
        create_vector_index(settings, store)


async def test_chroma_is_built_in_its_folder(
    sqlite_store: tuple[str, Store], tmp_path: Path
) -> None:
    need_chroma()
    url, store = sqlite_store
    settings = Settings(
        DATABASE_URL=url,
        vectors=VectorSettings(
            backend="chroma", chroma_path=tmp_path / "chroma", hnsw_ef_search=50
        ),
    )
    index = create_vector_index(settings, store)
    try:
        assert type(index).__name__ == "ChromaVectorIndex"
        assert await index.count("fish") == 0
        assert (tmp_path / "chroma").is_dir()
    finally:
        await index.aclose()


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown vector backend 'faiss'; known: chroma, pgvector"):
        backend_class("faiss")
    assert set(BACKENDS) == {"sqlite", "pgvector", "chroma"}


def test_every_registered_backend_imports() -> None:
    need_chroma()
    for name in BACKENDS:
        cls = backend_class(name)
        assert callable(getattr(cls, "create", None)), name


def test_missing_chromadb_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from carrier.memory.vectors.chroma_index import ChromaUnavailableError, ChromaVectorIndex

    monkeypatch.setitem(sys.modules, "chromadb", None)
    with pytest.raises(ChromaUnavailableError, match=r"pip install 'carrier\[chroma\]'"):
        ChromaVectorIndex(tmp_path / "chroma")


def test_importing_the_package_does_not_import_a_backend_sdk() -> None:
    code = (
        "import sys, carrier.memory.vectors as v; "
        "print(sorted(m for m in ('chromadb', 'carrier.memory.vectors.chroma_index', "
        "'carrier.memory.vectors.pgvector_index', 'carrier.memory.vectors.sqlite_index') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("vectors:\n  backend: faiss\n", "vectors.backend"),
        ("vectors:\n  hnsw_ef_search: 5\n", "vectors.hnsw_ef_search"),
        ("vectors:\n  colour: blue\n", "vectors.colour"),
    ],
)
def test_bad_vector_settings_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path)
