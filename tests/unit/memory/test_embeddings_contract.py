"""The embedding interface's helpers, the provider registry and the embeddings settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import numpy as np
import pytest

from carrier.memory.embeddings import EmbeddingError, EmbeddingUnavailable
from carrier.memory.embeddings.base import empty_vectors, l2_normalise, require
from carrier.memory.embeddings.openai_compatible import MAX_INPUT_CHARS, prepare_text
from carrier.memory.embeddings.registry import EMBEDDERS, create_embedder, embedder_class
from carrier.settings import ConfigError, EmbeddingSettings, load_settings


def test_unavailable_is_an_embedding_error() -> None:
    assert issubclass(EmbeddingUnavailable, EmbeddingError)


def test_l2_normalise_makes_unit_rows_and_leaves_zero_rows_finite() -> None:
    vectors = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.0]]))
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], atol=1e-7)


def test_empty_vectors_have_the_right_shape() -> None:
    empty = empty_vectors(384)
    assert empty.shape == (0, 384)
    assert empty.dtype == np.float32


def test_require_names_the_package_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    require("numpy", purpose="anything")  # installed: no error
    monkeypatch.setitem(sys.modules, "made_up_pkg", None)
    with pytest.raises(EmbeddingUnavailable) as caught:
        require("made-up-pkg", purpose="the thing")
    assert str(caught.value).startswith("the thing needs the Python package 'made-up-pkg'")
    assert str(caught.value).endswith("pip install made-up-pkg")


def test_every_configurable_provider_is_registered() -> None:
    provider = EmbeddingSettings.model_fields["provider"].annotation
    assert set(get_args(provider)) == set(EMBEDDERS)


def test_an_unknown_provider_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'word2vec'; known: minilm-onnx, openai"):
        embedder_class("word2vec")


def test_registered_classes_build_from_settings() -> None:
    for name in EMBEDDERS:
        assert callable(embedder_class(name).from_settings)


def test_importing_the_package_loads_no_model_runtime_or_sdk() -> None:
    code = (
        "import sys, carrier.memory.embeddings; "
        "print(sorted(m for m in ('onnxruntime', 'openai', 'tokenizers', 'torch', "
        "'carrier.memory.embeddings.onnx_minilm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_create_embedder_passes_the_openai_settings() -> None:
    settings = EmbeddingSettings(
        provider="openai",
        model="text-embedding-3-large",
        base_url="http://127.0.0.1:9/v1",
        api_key_env="MY_KEY",
        dimensions=256,
        timeout_seconds=7,
        batch_size=5,
    )
    embedder = create_embedder(settings, {"MY_KEY": "sk-x"})
    assert embedder.model == "openai/text-embedding-3-large"
    assert embedder.dimensions == 256


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("", " "),
        ("\n\t ", " "),
        ("a\x00b\x1fc\x7fd\x85e", "a b c d e"),
        ("keeps\nlines\tand tabs", "keeps\nlines\tand tabs"),
        ("🐟🎉", "🐟🎉"),
        ("\udfff", "?"),
    ],
)
def test_prepare_text_makes_any_text_sendable(text: str, sent: str) -> None:
    assert prepare_text(text) == sent


def test_prepare_text_cuts_long_text() -> None:
    assert prepare_text("é" * 100_000) == "é" * MAX_INPUT_CHARS


# -- settings -------------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("CARRIER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_default_is_the_local_model(clean_environment: Path) -> None:
    embeddings = load_settings().embeddings
    assert embeddings.provider == "minilm-onnx"
    assert embeddings.cache_dir == Path("data/models")
    assert embeddings.batch_size == 64
    assert embeddings.api_key_env == "OPENAI_API_KEY"
    assert embeddings.dimensions is None


def test_the_section_comes_from_file_and_environment(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_environment / "config.yaml").write_text(
        "embeddings:\n  provider: openai\n  model: nomic-embed-text\n  dimensions: 768\n"
        "  base_url: http://localhost:11434/v1\n  api_key_env: null\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CARRIER_EMBEDDINGS__BATCH_SIZE", "16")
    embeddings = load_settings().embeddings
    assert (embeddings.provider, embeddings.model, embeddings.dimensions) == (
        "openai",
        "nomic-embed-text",
        768,
    )
    assert embeddings.api_key_env is None
    assert embeddings.batch_size == 16


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("embeddings:\n  provider: word2vec\n", "embeddings.provider = 'word2vec'"),
        ("embeddings:\n  batch_size: 0\n", "embeddings.batch_size = 0"),
        ("embeddings:\n  base_url: localhost:11434\n", "embeddings.base_url"),
        ("embeddings:\n  dimensions: -3\n", "embeddings.dimensions = -3"),
        ("embeddings:\n  timeout_seconds: 0\n", "embeddings.timeout_seconds = 0"),
    ],
)
def test_a_wrong_value_is_named(clean_environment: Path, text: str, named: str) -> None:
    (clean_environment / "config.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_settings()


def test_a_key_pasted_as_the_variable_name_is_not_echoed(clean_environment: Path) -> None:
    (clean_environment / "config.yaml").write_text(
        "embeddings:\n  api_key_env: sk-proj-SECRET-1234\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "embeddings.api_key_env" in str(caught.value)
    assert "SECRET" not in str(caught.value)
