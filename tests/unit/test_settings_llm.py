"""The llm section of the settings: providers, mode, circuit, and API keys by variable name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from carrier.settings import ConfigError, LLMSettings, llm_api_keys, load_settings

KEY = "sk-test-0123456789-secret"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("CARRIER_", "OPENAI_", "ANTHROPIC_")) or name in (
            "DATABASE_URL",
            "REDIS_URL",
            "DISCORD_TOKEN",
            "MY_KEY",
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_provider_means_markov() -> None:
    settings = load_settings()
    assert settings.llm.providers == []
    assert settings.llm.mode is None
    assert settings.llm.effective_mode == "markov"
    assert settings.llm.circuit_failures == 3
    assert settings.llm.circuit_cooldown_seconds == 30.0
    assert settings.llm.hybrid_samples == 3


def test_a_provider_with_its_key_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    path = config(
        tmp_path,
        "llm:\n  providers:\n    - kind: openai\n      model: gpt-4o-mini\n      stream: true\n",
    )
    settings = load_settings(path)
    (provider,) = settings.llm.providers
    assert provider.name == "openai"  # defaults to the kind
    assert provider.api_key_env == "OPENAI_API_KEY"  # the kind's usual variable
    assert provider.stream is True
    assert provider.max_tokens == 300 and provider.context_window == 8192
    assert settings.llm.effective_mode == "llm"
    keys = llm_api_keys(settings.llm)
    assert keys["openai"] == SecretStr(KEY)
    assert KEY not in repr(settings)


def test_a_missing_key_variable_is_named_and_no_value_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # a key, but not the one asked for
    path = config(
        tmp_path,
        "llm:\n  providers:\n"
        "    - kind: anthropic\n      model: claude-sonnet-4-5\n      api_key_env: MY_KEY\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "MY_KEY" in message
    assert "llm.providers.0 (anthropic)" in message
    assert "api_key_env: null" in message
    assert KEY not in message


def test_the_key_may_come_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY={KEY}\n", encoding="utf-8")
    path = config(
        tmp_path, "llm:\n  providers:\n    - kind: anthropic\n      model: claude-sonnet-4-5\n"
    )
    settings = load_settings(path)
    assert llm_api_keys(settings.llm)["anthropic"] == SecretStr(KEY)


def test_a_local_server_needs_no_key(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        "llm:\n  mode: hybrid\n  providers:\n"
        "    - kind: openai\n      name: ollama\n      model: llama3.1:8b\n"
        "      base_url: http://localhost:11434/v1\n      api_key_env: null\n",
    )
    settings = load_settings(path)
    assert settings.llm.effective_mode == "hybrid"
    assert llm_api_keys(settings.llm, environ={}) == {"ollama": None}


def test_markov_mode_does_not_ask_for_keys(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        "llm:\n  mode: markov\n  providers:\n    - kind: openai\n      model: gpt-4o-mini\n",
    )
    assert load_settings(path).llm.effective_mode == "markov"


@pytest.mark.parametrize("mode", ["llm", "hybrid"])
def test_llm_modes_need_a_provider(tmp_path: Path, mode: str) -> None:
    path = config(tmp_path, f"llm:\n  mode: {mode}\n")
    with pytest.raises(ConfigError, match=f"mode '{mode}' needs at least one entry"):
        load_settings(path)


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("kind: gemini\n      model: x", "llm.providers.0.kind"),
        ("kind: openai\n      model: x\n      temperature: 2.5", "llm.providers.0.temperature"),
        ("kind: openai\n      model: x\n      base_url: localhost:1234", "http:// or https://"),
        ("kind: openai\n      model: x\n      api_key_env: not a name", "api_key_env"),
        ("kind: openai", "llm.providers.0.model"),
        ("kind: openai\n      model: x\n      api_key: sk-123", "unknown key"),
    ],
)
def test_wrong_provider_settings_are_named(tmp_path: Path, entry: str, problem: str) -> None:
    path = config(tmp_path, f"llm:\n  mode: markov\n  providers:\n    - {entry}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert problem in str(caught.value)
    assert "sk-123" not in str(caught.value)


def test_provider_names_are_unique() -> None:
    with pytest.raises(ValueError, match="two providers are named 'openai'"):
        LLMSettings.model_validate(
            {"providers": [{"kind": "openai", "model": "a"}, {"kind": "openai", "model": "b"}]}
        )


def test_a_key_pasted_as_the_variable_name_is_not_echoed(tmp_path: Path) -> None:
    path = config(
        tmp_path,
        f"llm:\n  providers:\n    - kind: openai\n      model: x\n      api_key_env: {KEY}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "llm.providers.0.api_key_env" in message
    assert "not a variable name" in message
    assert KEY not in message
