"""The ONNX BERT graph builder on a tiny random BERT, checked against a numpy BERT."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from carrier.memory.embeddings.minilm_graph import (
    BertConfig,
    activation_maxima,
    build_bert_encoder,
    site_inputs,
)

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

F = npt.NDArray[np.float32]
CONFIG = BertConfig(
    hidden_size=16,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=32,
    layer_norm_eps=1e-12,
    max_position_embeddings=12,
)
VOCAB = 50


def random_weights(seed: int = 0) -> dict[str, F]:
    rng = np.random.default_rng(seed)
    h, i = CONFIG.hidden_size, CONFIG.intermediate_size

    def t(*shape: int, scale: float = 0.3) -> F:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": t(VOCAB, h),
        "embeddings.position_embeddings.weight": t(CONFIG.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": t(2, h),
        "embeddings.LayerNorm.weight": 1 + t(h, scale=0.1),
        "embeddings.LayerNorm.bias": t(h, scale=0.1),
    }
    for layer in range(CONFIG.num_hidden_layers):
        p = f"encoder.layer.{layer}"
        for part in ("query", "key", "value"):
            weights[f"{p}.attention.self.{part}.weight"] = t(h, h)
            weights[f"{p}.attention.self.{part}.bias"] = t(h, scale=0.1)
        weights[f"{p}.attention.output.dense.weight"] = t(h, h)
        weights[f"{p}.attention.output.dense.bias"] = t(h, scale=0.1)
        weights[f"{p}.attention.output.LayerNorm.weight"] = 1 + t(h, scale=0.1)
        weights[f"{p}.attention.output.LayerNorm.bias"] = t(h, scale=0.1)
        weights[f"{p}.intermediate.dense.weight"] = t(i, h)
        weights[f"{p}.intermediate.dense.bias"] = t(i, scale=0.1)
        weights[f"{p}.output.dense.weight"] = t(h, i)
        weights[f"{p}.output.dense.bias"] = t(h, scale=0.1)
        weights[f"{p}.output.LayerNorm.weight"] = 1 + t(h, scale=0.1)
        weights[f"{p}.output.LayerNorm.bias"] = t(h, scale=0.1)
    return weights


def layer_norm(x: F, gamma: F, beta: F) -> F:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + CONFIG.layer_norm_eps) * gamma + beta  # type: ignore[no-any-return]


def numpy_bert(w: dict[str, F], ids: npt.NDArray[np.int32], mask: npt.NDArray[np.int32]) -> F:
    """Hugging Face's BertModel, written out (token type 0, padding masked)."""
    erf = np.vectorize(math.erf)
    seq = ids.shape[1]
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:seq]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads = CONFIG.num_attention_heads
    size = CONFIG.hidden_size // heads
    bias = np.where(mask[:, None, None, :] == 1, 0.0, -1e9)
    for layer in range(CONFIG.num_hidden_layers):
        p = f"encoder.layer.{layer}"

        def dense(v: F, name: str, p: str = p) -> F:
            return v @ w[f"{p}.{name}.weight"].T + w[f"{p}.{name}.bias"]

        def split(v: F) -> F:
            return v.reshape(v.shape[0], seq, heads, size).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = layer_norm(
            dense(context, "attention.output.dense") + x,
            w[f"{p}.attention.output.LayerNorm.weight"],
            w[f"{p}.attention.output.LayerNorm.bias"],
        )
        inner = dense(x, "intermediate.dense")
        inner = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = layer_norm(
            dense(inner, "output.dense") + x,
            w[f"{p}.output.LayerNorm.weight"],
            w[f"{p}.output.LayerNorm.bias"],
        )
    return x.astype(np.float32)


def run(model: Any, ids: npt.NDArray[np.int32], mask: npt.NDArray[np.int32]) -> F:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    return np.asarray(hidden)


IDS = np.array([[1, 7, 9, 23, 2, 0, 0], [1, 40, 3, 11, 12, 13, 2]], dtype=np.int32)
MASK = np.array([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=np.int32)


def test_the_graph_computes_what_bert_computes() -> None:
    weights = random_weights()
    expected = numpy_bert(weights, IDS, MASK)
    actual = run(build_bert_encoder(CONFIG, weights), IDS, MASK)
    assert actual.shape == (2, 7, CONFIG.hidden_size)
    real = MASK.astype(bool)  # padded positions are never pooled
    np.testing.assert_allclose(actual[real], expected[real], atol=2e-4)


def test_a_bert_prefix_in_the_checkpoint_is_accepted() -> None:
    weights = {f"bert.{name}": value for name, value in random_weights().items()}
    np.testing.assert_allclose(
        run(build_bert_encoder(CONFIG, weights), IDS, MASK),
        run(build_bert_encoder(CONFIG, random_weights()), IDS, MASK),
        atol=1e-6,
    )


def test_smoothing_changes_nothing_in_fp32() -> None:
    weights = random_weights(1)
    plain = build_bert_encoder(CONFIG, weights)
    maxima = activation_maxima(plain, CONFIG, [(IDS, MASK)])
    assert set(maxima) == set(site_inputs(CONFIG))
    assert all(m.shape[0] in (16, 32) and (m > 0).all() for m in maxima.values())
    smoothed = build_bert_encoder(CONFIG, weights, maxima, 0.6)
    assert any(node.op_type == "Mul" for node in smoothed.graph.node)
    np.testing.assert_allclose(run(smoothed, IDS, MASK), run(plain, IDS, MASK), atol=1e-4)


def test_a_missing_tensor_is_named() -> None:
    weights = random_weights()
    del weights["encoder.layer.1.output.dense.weight"]
    with pytest.raises(KeyError, match=r"encoder\.layer\.1\.output\.dense\.weight"):
        build_bert_encoder(CONFIG, weights)


def test_the_config_is_read_and_checked(tmp_path: Any) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        '{"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,'
        ' "intermediate_size": 1536, "layer_norm_eps": 1e-12,'
        ' "max_position_embeddings": 512, "hidden_act": "gelu"}'
    )
    config = BertConfig.from_file(path)
    assert (config.hidden_size, config.num_hidden_layers, config.layer_norm_eps) == (
        384,
        6,
        1e-12,
    )
    path.write_text(path.read_text().replace('"gelu"', '"relu"'))
    with pytest.raises(ValueError, match="relu"):
        BertConfig.from_file(path)
