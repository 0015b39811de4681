"""Chroma (the seed's long-term store): an embedded ``PersistentClient`` in a folder.

Optional: ``pip install carrier[chroma]`` (chromadb is large, ~500 MB installed, so it is not
part of the default install); this module imports it only when the backend is built, and
names the extra when it is missing.  Telemetry is off and Chroma never embeds anything
itself (no embedding function, so no model download): Carrier hands it finished vectors.

One collection per (model, dimension), cosine space, HNSW m = 16, ef_construction = 64,
``ef_search`` from settings; agent, user and guild are metadata filtered in the query
(a vector without a guild is stored with ``guild_id = ""``).  A search whose candidates are
few - a collection of at most :data:`EXACT_UP_TO` vectors, or a search of one user's - is
exact instead: the filtered vectors are fetched and ranked in numpy, so a small filtered set
never loses a neighbour to the approximate graph (which, asked for all 30 of 30 filtered
vectors, once returned 29).  Chroma's client is
synchronous: every call runs in one dedicated worker thread, so the event loop never waits
on Chroma's disk I/O and Chroma never sees two threads.  Embedded Chroma is meant for one
process at a time; several bot processes should share pgvector instead.

A folder that cannot be used at start (not a folder, not writable) raises
:class:`~carrier.memory.vectors.base.VectorIndexUnavailable` naming ``vectors.chroma_path``;
a Chroma failure later (its files deleted or unwritable under a running bot) raises it too,
and the client is opened afresh on the next call, so the index recovers once the folder is
usable again (its vectors are then rebuilt from the database by ``Memory.rebuild_index``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np

from carrier.memory.vectors.base import (
    FloatVector,
    Hit,
    VectorIndex,
    VectorIndexUnavailable,
    VectorItem,
    VectorLike,
    check_model,
    checked_batch,
    checked_search,
    dimension_error,
)

T = TypeVar("T")

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
EXACT_UP_TO = 2000
_NO_GUILD = ""


class ChromaUnavailableError(VectorIndexUnavailable):
    """chromadb is not installed."""


def _check_folder(path: Path) -> None:
    """The Chroma folder exists (created when missing) and is writable, or a clear error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".carrier-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise VectorIndexUnavailable(
            f"cannot use {path} for the Chroma vector database (vectors.chroma_path): "
            f"{exc.strerror or exc}; point vectors.chroma_path at a writable folder, or set "
            "vectors.backend to sqlite or pgvector"
        ) from None


def collection_name(model: str, dim: int) -> str:
    digest = hashlib.sha256(model.encode("utf-8")).hexdigest()[:24]
    return f"carrier-{digest}-{dim}"


class ChromaVectorIndex(VectorIndex):
    """Vectors in an embedded Chroma database at ``path``.  The contract is
    :mod:`carrier.memory.vectors.base`; the design is this module's docstring."""

    def __init__(self, path: Path | str, *, ef_search: int = 200) -> None:
        try:
            import chromadb  # noqa: F401
        except ImportError:
            raise ChromaUnavailableError(
                "the chroma vector backend needs chromadb: pip install 'carrier[chroma]' "
                "(or set vectors.backend to sqlite or pgvector)"
            ) from None
        self.path = Path(path)
        _check_folder(self.path)
        self.ef_search = ef_search
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="carrier-chroma")
        self._client: Any = None
        self._collections: dict[tuple[str, int], Any] = {}
        self._closed = False

    @classmethod
    def create(cls, settings: Any, database: Any) -> Self:
        """The registry's constructor (``settings`` is the ``vectors`` section)."""
        return cls(settings.chroma_path, ef_search=settings.hnsw_ef_search)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("this Chroma vector index is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, function, *args)
        except (ValueError, VectorIndexUnavailable):
            raise  # the contract's own errors
        except Exception as exc:
            from chromadb.errors import ChromaError

            if not isinstance(exc, ChromaError | OSError):
                raise
            # Open the client afresh next time: this one may be holding deleted files.
            await loop.run_in_executor(self._thread, self._forget_client)
            raise VectorIndexUnavailable(
                f"the Chroma database in {self.path} (vectors.chroma_path) failed: "
                f"{' '.join(str(exc).split())[:300]}; check that the folder exists and is "
                "writable. The facts are safe in the database; `carrier memory init --rebuild` "
                "rebuilds the vectors"
            ) from exc

    def _forget_client(self) -> None:
        self._collections.clear()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # already broken; being replaced anyway
                client.close()

    # --- in the worker thread ------------------------------------------------------------

    def _open(self) -> Any:
        if self._client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings

            _check_folder(self.path)
            self._client = chromadb.PersistentClient(
                path=str(self.path),
                settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
            )
        return self._client

    def _collection(self, model: str, dim: int, *, create: bool) -> Any:
        key = (model, dim)
        found = self._collections.get(key)
        if found is not None:
            return found
        client = self._open()
        name = collection_name(model, dim)
        if create:
            found = client.get_or_create_collection(
                name,
                configuration={
                    "hnsw": {
                        "space": "cosine",
                        "max_neighbors": HNSW_M,
                        "ef_construction": HNSW_EF_CONSTRUCTION,
                        "ef_search": self.ef_search,
                    }
                },
                metadata={"model": model, "dim": dim},
                embedding_function=None,
            )
        else:
            found = self._find(name)
            if found is None:
                return None
        self._collections[key] = found
        return found

    def _find(self, name: str) -> Any:
        client = self._open()
        for collection in client.list_collections():
            if collection.name == name:
                return client.get_collection(name, embedding_function=None)
        return None

    def _model_collections(self, model: str | None) -> list[tuple[str, int, Any]]:
        """Every Carrier collection (of ``model``), as (model, dim, collection)."""
        client = self._open()
        found = []
        for collection in client.list_collections():
            meta = collection.metadata or {}
            if not collection.name.startswith("carrier-") or "model" not in meta:
                continue
            if model is not None and meta["model"] != model:
                continue
            found.append(
                (
                    str(meta["model"]),
                    int(meta["dim"]),
                    client.get_collection(collection.name, embedding_function=None),
                )
            )
        return found

    def _agent_dims(self, agent_id: str, model: str) -> set[int]:
        """The dimensions of the vectors this agent has for ``model``."""
        dims = set()
        for _, dim, collection in self._model_collections(model):
            if collection.get(where={"agent_id": agent_id}, limit=1, include=[])["ids"]:
                dims.add(dim)
        return dims

    def _upsert(self, batch: list[tuple[VectorItem, FloatVector]]) -> None:
        groups: dict[tuple[str, int], list[tuple[VectorItem, FloatVector]]] = {}
        for item, vector in batch:
            groups.setdefault((item.model, vector.size), []).append((item, vector))
        for (model, dim), rows in groups.items():
            for agent_id in {item.agent_id for item, _ in rows}:
                other = self._agent_dims(agent_id, model) - {dim}
                if other:
                    raise dimension_error(model, min(other), dim)
        client = self._open()
        limit = max(1, int(client.get_max_batch_size()))
        for (model, dim), rows in groups.items():
            collection = self._collection(model, dim, create=True)
            for start in range(0, len(rows), limit):
                part = rows[start : start + limit]
                collection.upsert(
                    ids=[str(item.id) for item, _ in part],
                    embeddings=np.stack([vector for _, vector in part]),
                    metadatas=[
                        {
                            "agent_id": item.agent_id,
                            "user_id": item.user_id,
                            "guild_id": item.guild_id if item.guild_id is not None else _NO_GUILD,
                        }
                        for item, _ in part
                    ],
                )

    def _delete(self, ids: list[str], model: str | None) -> None:
        for _, _, collection in self._model_collections(model):
            collection.delete(ids=ids)

    def _clear(self, agent_id: str, model: str | None) -> None:
        for _, _, collection in self._model_collections(model):
            collection.delete(where={"agent_id": agent_id})

    def _count(self, agent_id: str, model: str | None) -> int:
        return sum(
            len(collection.get(where={"agent_id": agent_id}, include=[])["ids"])
            for _, _, collection in self._model_collections(model)
        )

    def _search(
        self,
        agent_id: str,
        query: FloatVector,
        k: int,
        model: str,
        user_id: str | None,
        guilds: tuple[set[str], bool] | None,
    ) -> list[Hit]:
        dim = query.size
        collection = self._collection(model, dim, create=False)
        hits: list[Hit] = []
        if collection is not None:
            clauses: list[dict[str, Any]] = [{"agent_id": agent_id}]
            if user_id is not None:
                clauses.append({"user_id": user_id})
            if guilds is not None:
                allowed = sorted(guilds[0]) + ([_NO_GUILD] if guilds[1] else [])
                clauses.append({"guild_id": {"$in": allowed}})
            where = clauses[0] if len(clauses) == 1 else {"$and": clauses}
            exact = None
            if user_id is not None or collection.count() <= EXACT_UP_TO:
                exact = self._exact(collection, where, query, k)
            if exact is not None:
                hits = exact
            else:
                result = collection.query(
                    query_embeddings=query[np.newaxis, :],
                    n_results=k,
                    where=where,
                    include=["distances"],
                )
                ids = result["ids"][0]
                distances = (result["distances"] or [[]])[0]
                hits = [
                    Hit(int(fact_id), float(min(1.0, max(-1.0, 1.0 - float(distance)))))
                    for fact_id, distance in zip(ids, distances, strict=True)
                ]
                hits.sort(key=lambda hit: -hit.score)
        if len(hits) < k:
            other = self._agent_dims(agent_id, model) - {dim}
            if other:
                raise dimension_error(model, min(other), dim)
        return hits

    def _exact(
        self, collection: Any, where: dict[str, Any], query: FloatVector, k: int
    ) -> list[Hit] | None:
        """Exact cosine over the filtered vectors, or ``None`` when they are too many."""
        found = collection.get(where=where, include=["embeddings"], limit=EXACT_UP_TO + 1)
        ids = found["ids"]
        if len(ids) > EXACT_UP_TO:
            return None
        if not ids:
            return []
        matrix = np.asarray(found["embeddings"], dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1)
        scores = (matrix @ query) / np.where(norms > 0, norms, 1.0)
        top = min(k, len(ids))
        best = np.argpartition(-scores, top - 1)[:top] if top < len(ids) else np.arange(len(ids))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Hit(int(ids[i]), float(min(1.0, max(-1.0, scores[i])))) for i in best]

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._collections.clear()

    # --- the interface -------------------------------------------------------------------

    async def upsert(self, items: Sequence[VectorItem]) -> None:
        batch = checked_batch(items)
        if batch:
            await self._run(self._upsert, batch)

    async def delete(self, ids: Collection[int], *, model: str | None = None) -> None:
        wanted = sorted({str(int(i)) for i in ids})
        if model is not None:
            check_model(model)
        if wanted:
            await self._run(self._delete, wanted, model)

    async def clear(self, agent_id: str, *, model: str | None = None) -> None:
        if model is not None:
            check_model(model)
        await self._run(self._clear, agent_id, model)

    async def count(self, agent_id: str, model: str | None = None) -> int:
        if model is not None:
            check_model(model)
        return await self._run(self._count, agent_id, model)

    async def search(
        self,
        agent_id: str,
        query_vector: VectorLike,
        k: int,
        *,
        model: str,
        user_id: str | None = None,
        guild_ids: Collection[str | None] | None = None,
    ) -> list[Hit]:
        checked = checked_search(query_vector, k, model, guild_ids)
        if checked is None:
            return []
        query, guilds = checked.query, checked.guilds
        return await self._run(self._search, agent_id, query, k, model, user_id, guilds)

    async def aclose(self) -> None:
        if self._closed:
            return
        try:
            await self._run(self._close)
        finally:
            self._closed = True
            self._thread.shutdown(wait=True)
