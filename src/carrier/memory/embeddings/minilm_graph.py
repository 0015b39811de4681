"""Build a BERT encoder as an ONNX graph from safetensors weights, without torch.

The graph is written with ``onnx.helper`` and ONNX Runtime's fused CPU operators (domain
``com.microsoft``): ``EmbedLayerNormalization``, ``Attention``, ``SkipLayerNormalization`` and
``BiasGelu``.  Those are the operators ONNX Runtime's own transformer optimiser would fuse an
exported BERT into, and ``quantize_dynamic`` turns ``Attention`` into ``QAttention`` and each
``MatMul`` into an int8 matrix product, so the quantised model runs on fused int8 kernels.

Inputs: ``input_ids`` and ``attention_mask``, both int32 ``(batch, sequence)``; the token
type is always 0 (one sentence per row), so its embedding is folded into the position
embeddings.  Output: ``last_hidden_state``, float32 ``(batch, sequence, hidden)``; pooling is
the caller's job.  :func:`activation_maxima` calibrates the optional smoothing for int8.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

# Bump when the graph changes: it is part of the cache key of built models.
GRAPH_VERSION = 1
MS_DOMAIN = "com.microsoft"
# Standard operators from opset 17; the com.microsoft ones are version 1 of their domain.
_OPSET = 17

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``config.json`` the encoder needs."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_position_embeddings: int
    hidden_act: str = "gelu"

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        config = cls(
            hidden_size=int(data["hidden_size"]),
            num_hidden_layers=int(data["num_hidden_layers"]),
            num_attention_heads=int(data["num_attention_heads"]),
            intermediate_size=int(data["intermediate_size"]),
            layer_norm_eps=float(data["layer_norm_eps"]),
            max_position_embeddings=int(data["max_position_embeddings"]),
            hidden_act=str(data.get("hidden_act", "gelu")),
        )
        if config.hidden_act != "gelu":
            raise ValueError(f"{path}: hidden_act {config.hidden_act!r} is not supported (gelu)")
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config


def site_inputs(config: BertConfig) -> dict[str, str]:
    """Each quantisable matrix product ("site", also its node name) -> its input tensor."""
    sites: dict[str, str] = {}
    for layer in range(config.num_hidden_layers):
        n = f"layer{layer}"
        sites[f"{n}_attention"] = f"hidden_{layer}"
        sites[f"{n}_attn_out"] = f"{n}_attention"
        sites[f"{n}_ffn_in"] = f"{n}_attn_normed"
        sites[f"{n}_ffn_out"] = f"{n}_ffn_act"
    return sites


def build_bert_encoder(
    config: BertConfig,
    weights: Mapping[str, FloatArray],
    activation_maxima: Mapping[str, FloatArray] | None = None,
    smoothing_alpha: float = 0.5,
) -> Any:
    """The encoder as an ``onnx.ModelProto`` (returned as ``Any``: onnx ships no types).

    ``weights`` are the tensors of a Hugging Face ``BertModel`` checkpoint (names such as
    ``embeddings.word_embeddings.weight`` or ``encoder.layer.0.attention.self.query.weight``,
    with or without a ``bert.`` prefix).

    With ``activation_maxima`` (from :func:`activation_maxima`), every matrix product named
    there is smoothed for int8 quantisation (SmoothQuant): its input is divided per channel by
    ``s = max|x|**alpha / max|w|**(1 - alpha)`` (one ``Mul``) and its weight rows multiplied
    by ``s``, which leaves the fp32 result unchanged but moves activation outliers, which
    dynamic quantisation handles badly (one scale per tensor), into the weights, which are
    quantised per channel.
    """
    from onnx import TensorProto, helper, numpy_helper

    def weight(name: str) -> FloatArray:
        for key in (name, f"bert.{name}"):
            if key in weights:
                return np.ascontiguousarray(weights[key], dtype=np.float32)
        raise KeyError(f"the checkpoint has no tensor {name!r}")

    initializers: list[Any] = []
    nodes: list[Any] = []

    def constant(name: str, array: FloatArray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def linear_weight(prefix: str) -> FloatArray:
        # torch's Linear stores (out, in); MatMul wants (in, out).
        return weight(f"{prefix}.weight").T

    eps = config.layer_norm_eps
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "input_ids",
                "",
                constant("word_embeddings", weight("embeddings.word_embeddings.weight")),
                constant(
                    "position_embeddings",
                    weight("embeddings.position_embeddings.weight")
                    + weight("embeddings.token_type_embeddings.weight")[0],
                ),
                "",
                constant("embeddings_ln_gamma", weight("embeddings.LayerNorm.weight")),
                constant("embeddings_ln_beta", weight("embeddings.LayerNorm.bias")),
            ],
            # The operator's type inference expects its mask_index output to exist.
            ["hidden_0", "unused_mask_index"],
            name="embeddings",
            domain=MS_DOMAIN,
            epsilon=eps,
        )
    )

    def linear(site: str, source: str, matrix: FloatArray) -> str:
        """``source @ matrix`` as a MatMul, smoothed when ``activation_maxima`` has ``site``."""
        source, matrix = smooth(site, source, matrix)
        nodes.append(
            helper.make_node(
                "MatMul", [source, constant(f"{site}_weight", matrix)], [site], name=site
            )
        )
        return site

    def smooth(site: str, source: str, matrix: FloatArray) -> tuple[str, FloatArray]:
        # SmoothQuant: x @ W == (x / s) @ (s * W).  Dividing the activation's outlier channels
        # by s moves their range into the weights, which are quantised per channel.
        maxima = None if activation_maxima is None else activation_maxima.get(site)
        if maxima is None:
            return source, matrix
        weight_maxima = np.abs(matrix).max(axis=1)
        scale = np.power(np.maximum(maxima, 1e-5), smoothing_alpha) / np.power(
            np.maximum(weight_maxima, 1e-5), 1.0 - smoothing_alpha
        )
        scale = np.clip(scale, 1e-2, 1e2).astype(np.float32)
        nodes.append(
            helper.make_node(
                "Mul",
                [source, constant(f"{site}_smooth_inverse", (1.0 / scale).astype(np.float32))],
                [f"{site}_smoothed"],
                name=f"{site}_smooth",
            )
        )
        return f"{site}_smoothed", (matrix * scale[:, None]).astype(np.float32)

    def skip_layer_norm(name: str, value: str, skip: str, prefix: str, bias: str) -> str:
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    value,
                    skip,
                    constant(f"{name}_gamma", weight(f"{prefix}.LayerNorm.weight")),
                    constant(f"{name}_beta", weight(f"{prefix}.LayerNorm.bias")),
                    constant(f"{name}_bias", weight(bias)),
                ],
                [name],
                name=name,
                domain=MS_DOMAIN,
                epsilon=eps,
            )
        )
        return name

    hidden = "hidden_0"
    for layer in range(config.num_hidden_layers):
        p = f"encoder.layer.{layer}"
        n = f"layer{layer}"
        parts = ("query", "key", "value")
        qkv_weight = np.concatenate(
            [linear_weight(f"{p}.attention.self.{part}") for part in parts], axis=1
        )
        qkv_bias = np.concatenate([weight(f"{p}.attention.self.{part}.bias") for part in parts])
        source, qkv_weight = smooth(f"{n}_attention", hidden, qkv_weight)
        nodes.append(
            helper.make_node(
                "Attention",
                [
                    source,
                    constant(f"{n}_qkv_weight", qkv_weight),
                    constant(f"{n}_qkv_bias", qkv_bias),
                    "attention_mask",
                ],
                [f"{n}_attention"],
                name=f"{n}_attention",
                domain=MS_DOMAIN,
                num_heads=config.num_attention_heads,
            )
        )
        projected = linear(
            f"{n}_attn_out", f"{n}_attention", linear_weight(f"{p}.attention.output.dense")
        )
        attended = skip_layer_norm(
            f"{n}_attn_normed",
            projected,
            hidden,
            f"{p}.attention.output",
            f"{p}.attention.output.dense.bias",
        )
        expanded = linear(f"{n}_ffn_in", attended, linear_weight(f"{p}.intermediate.dense"))
        nodes.append(
            helper.make_node(
                "BiasGelu",
                [expanded, constant(f"{n}_ffn_in_bias", weight(f"{p}.intermediate.dense.bias"))],
                [f"{n}_ffn_act"],
                name=f"{n}_gelu",
                domain=MS_DOMAIN,
            )
        )
        reduced = linear(f"{n}_ffn_out", f"{n}_ffn_act", linear_weight(f"{p}.output.dense"))
        hidden = skip_layer_norm(
            f"hidden_{layer + 1}", reduced, attended, f"{p}.output", f"{p}.output.dense.bias"
        )

    nodes.append(helper.make_node("Identity", [hidden], ["last_hidden_state"], name="output"))
    graph = helper.make_graph(
        nodes,
        "bert_encoder",
        inputs=[
            helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", "sequence"]),
            helper.make_tensor_value_info(
                "attention_mask", TensorProto.INT32, ["batch", "sequence"]
            ),
        ],
        outputs=[
            helper.make_tensor_value_info(
                "last_hidden_state",
                TensorProto.FLOAT,
                ["batch", "sequence", config.hidden_size],
            )
        ],
        initializer=initializers,
        # Every intermediate is float32: stated, because shape inference does not know the
        # com.microsoft operators and the quantiser needs each tensor's type.
        value_info=[
            helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
            for node in nodes[:-1]
            for output in node.output
            if output != "unused_mask_index"
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="carrier",
    )
    model.ir_version = 8
    return model


def activation_maxima(
    model: Any, config: BertConfig, batches: Iterable[tuple[IntArray, IntArray]]
) -> dict[str, FloatArray]:
    """Per site, the largest absolute value of each input channel over ``batches`` of
    ``(input_ids, attention_mask)``, padding excluded: the calibration for smoothing."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    sites = site_inputs(config)
    probe = type(model)()
    probe.CopyFrom(model)
    probe.graph.output.extend(
        helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None) for tensor in sites.values()
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = list(sites.values())
    maxima: dict[str, FloatArray] = {}
    for input_ids, attention_mask in batches:
        outputs = session.run(names, {"input_ids": input_ids, "attention_mask": attention_mask})
        real = attention_mask.astype(bool)
        for site, output in zip(sites, outputs, strict=True):
            peak = np.abs(np.asarray(output)[real]).max(axis=0).astype(np.float32)
            maxima[site] = peak if site not in maxima else np.maximum(maxima[site], peak)
    return maxima
