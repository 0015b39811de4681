"""Settings: config.yaml + environment + .env, validated with messages an operator can act on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from carrier.settings import ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config.example.yaml"
TOKEN = "MTIz.discord-token-value.S3CR3T"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No config.yaml, .env or CARRIER_* variable from the developer's machine leaks in."""
    for name in list(os.environ):
        if name.startswith("CARRIER_") or name in ("DATABASE_URL", "REDIS_URL", "DISCORD_TOKEN"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_config(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(directory: Path, text: str) -> str:
    path = write_config(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def test_defaults_load_without_any_file(tmp_path: Path) -> None:
    assert not (tmp_path / "config.yaml").exists()
    settings = load_settings()
    assert settings.agent.id == "fish"
    assert settings.engine.reply_chance == 0.0
    assert settings.rate_limits.per_user == "30/minute"
    assert settings.effective_database_url == "sqlite+aiosqlite:///./data/carrier.db"
    assert settings.effective_discord_token is None


def test_a_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nowhere.yaml")


def test_values_from_the_file_are_used(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "engine:\n  reply_chance: 0.25\n"
        "rate_limits:\n  global: 50/hour\n"
        "logging:\n  level: DEBUG\n",
    )
    settings = load_settings(path)
    assert settings.engine.reply_chance == 0.25
    assert settings.rate_limits.global_ == "50/hour"
    assert settings.logging.level == "DEBUG"
    # Untouched keys of a section keep their defaults.
    assert settings.engine.context_token_budget == 1500


def test_the_default_file_is_config_yaml_in_the_working_directory(tmp_path: Path) -> None:
    write_config(tmp_path, "agent:\n  id: salmon\n")
    assert load_settings().agent.id == "salmon"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("engin:\n  reply_chance: 0.5\n", "engin"),
        ("engine:\n  reply_chanse: 0.5\n", "engine.reply_chanse"),
        ("logging:\n  level: INFO\n  colour: true\n", "logging.colour"),
    ],
)
def test_an_unknown_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(tmp_path, text)
    assert f"unknown key '{key}'" in message
    assert "config.yaml" in message


@pytest.mark.parametrize(
    ("text", "key", "value", "allowed"),
    [
        ("engine:\n  reply_chance: 2\n", "engine.reply_chance", "2", "less than or equal to 1"),
        (
            "logging:\n  level: LOUD\n",
            "logging.level",
            "'LOUD'",
            "'DEBUG', 'INFO', 'WARNING' or 'ERROR'",
        ),
        ("mood:\n  timezone: Mars/Base\n", "mood.timezone", "'Mars/Base'", "IANA time zone"),
        ("rate_limits:\n  per_user: lots\n", "rate_limits.per_user", "'lots'", "30/minute"),
        ("agent:\n  id: Not An Id\n", "agent.id", "'Not An Id'", "pattern"),
        (
            "database:\n  url: mysql://db/carrier\n",
            "database.url",
            "'mysql://db/carrier'",
            "postgresql+asyncpg://",
        ),
        ("database:\n  busy_timeout_ms: -1\n", "database.busy_timeout_ms", "-1", "greater than"),
    ],
)
def test_a_wrong_value_names_key_value_and_what_is_allowed(
    tmp_path: Path, text: str, key: str, value: str, allowed: str
) -> None:
    message = config_error(tmp_path, text)
    assert f"{key} = {value}" in message
    assert allowed in message


def test_every_wrong_value_is_reported_at_once(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, "engine:\n  reply_chance: 2\nlogging:\n  level: LOUD\nengin: {}\n"
    )
    assert "engine.reply_chance" in message
    assert "logging.level" in message
    assert "unknown key 'engin'" in message


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "engine:\n  context_token_budget: 900\n  reply_chance: 0.5\n")
    monkeypatch.setenv("CARRIER_ENGINE__CONTEXT_TOKEN_BUDGET", "2500")
    settings = load_settings(path)
    assert settings.engine.context_token_budget == 2500
    # The rest of the file's section still applies.
    assert settings.engine.reply_chance == 0.5


def test_a_wrong_environment_value_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARRIER_ENGINE__CONTEXT_TOKEN_BUDGET", "plenty")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "engine.context_token_budget = 'plenty'" in message
    assert "valid integer" in message
    assert "environment" in message


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        (
            "postgres://bot:pw@db.example.org/carrier",
            "postgresql+asyncpg://bot:pw@db.example.org/carrier",
        ),
        ("postgresql://bot@db/carrier", "postgresql+asyncpg://bot@db/carrier"),
        ("postgresql+asyncpg://bot@db/carrier", "postgresql+asyncpg://bot@db/carrier"),
        ("sqlite:////var/lib/carrier.db", "sqlite+aiosqlite:////var/lib/carrier.db"),
    ],
)
def test_database_url_overrides_the_database_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, effective: str
) -> None:
    path = write_config(tmp_path, "database:\n  url: sqlite+aiosqlite:///./other.db\n")
    monkeypatch.setenv("DATABASE_URL", given)
    settings = load_settings(path)
    assert settings.effective_database_url == effective
    assert settings.database.url == "sqlite+aiosqlite:///./other.db"


def test_a_wrong_database_url_fails_at_load_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://bot:hunter2@db/carrier")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "DATABASE_URL" in message
    assert "mysql://bot:***@db/carrier" in message
    assert "hunter2" not in message


def test_a_database_password_is_not_in_the_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:hunter2@db/carrier")
    settings = load_settings()
    assert "hunter2" in settings.effective_database_url
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)


def test_dotenv_is_read_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "CARRIER_ENGINE__REPLY_CHANCE=0.3\n"
        f"DISCORD_TOKEN={TOKEN}\n"
        "REDIS_URL=redis://localhost:6379/0\n"
        # Variables for other tools may share the file.
        "OPENAI_API_KEY=sk-not-ours\n",
        encoding="utf-8",
    )
    settings = load_settings()
    assert settings.engine.reply_chance == 0.3
    token = settings.effective_discord_token
    assert token is not None and token.get_secret_value() == TOKEN
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://localhost:6379/0"


def test_environment_wins_over_dotenv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("CARRIER_ENGINE__REPLY_CHANCE=0.3\n", encoding="utf-8")
    monkeypatch.setenv("CARRIER_ENGINE__REPLY_CHANCE", "0.9")
    assert load_settings().engine.reply_chance == 0.9


def test_a_misspelt_carrier_variable_in_dotenv_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CARRIER_ENGINE__REPLY_CHANSE=0.3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'engine\.reply_chanse'"):
        load_settings()


def test_discord_token_from_environment_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, "discord:\n  token: from-the-file\n")
    assert load_settings(path).effective_discord_token.get_secret_value() == "from-the-file"  # type: ignore[union-attr]
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    assert load_settings(path).effective_discord_token.get_secret_value() == TOKEN  # type: ignore[union-attr]


def test_the_discord_token_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    settings = load_settings()
    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert TOKEN not in repr(settings.model_dump())

    # Another key is wrong: the error does not carry the token either.
    path = write_config(tmp_path, f"engine:\n  reply_chance: 2\ndiscord:\n  token: {TOKEN}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "engine.reply_chance" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        f"discord:\n  token: [{TOKEN}]\n",  # wrong type for the token itself
        f"discord: {TOKEN}\n",  # the section written as a bare value
        f"discord:\n  token: {TOKEN}\n  tokn: {TOKEN}\n",  # an unknown key next to it
        f'discord:\n  token: "{TOKEN}\n  other: 1\n',  # broken YAML on the token's line
    ],
)
def test_a_token_in_a_broken_config_is_not_echoed(tmp_path: Path, text: str) -> None:
    message = config_error(tmp_path, text)
    assert "config.yaml" in message
    assert TOKEN not in message


def test_a_wrong_token_from_the_environment_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARRIER_DISCORD__TOKEN", "")
    monkeypatch.setenv("CARRIER_DISCORD__TOKN", TOKEN)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "discord.tokn" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("engine:\n  reply_chance: [0.5\n", "not valid YAML at line"),
        ("engine: {reply_chance: 0.5\n", "not valid YAML at line"),
        ("\tengine: 1\n", "not valid YAML"),
    ],
)
def test_invalid_yaml_is_a_config_error(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


@pytest.mark.parametrize("text", ["- engine\n- mood\n", "just a string\n", "42\n"])
def test_the_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "top level must be a mapping" in config_error(tmp_path, text)


def test_a_section_that_is_not_a_mapping_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "engine: 5\n")
    assert "engine = 5" in message
    assert "dictionary" in message


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "# nothing configured yet\n")
    assert load_settings(path) == load_settings()


def test_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"engine:\n  reply_chance: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_settings(path)


def test_load_settings_leaves_carrier_config_as_it_was(tmp_path: Path) -> None:
    path = write_config(tmp_path, "engine:\n  reply_chance: 0.5\n")
    load_settings(path)
    assert "CARRIER_CONFIG" not in os.environ


def test_carrier_config_names_the_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("agent:\n  id: salmon\n", encoding="utf-8")
    monkeypatch.setenv("CARRIER_CONFIG", str(elsewhere))
    assert load_settings().agent.id == "salmon"


# --- config.example.yaml must not drift from Settings ------------------------------------


def _keys(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _section_models() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in Settings.model_fields.items():
        annotation: Any = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections[name] = annotation
    return sections


def test_the_example_config_loads_to_exactly_the_defaults() -> None:
    assert EXAMPLE.is_file(), "config.example.yaml is missing from the repository root"
    assert load_settings(EXAMPLE) == load_settings()


def test_the_example_config_lists_every_key() -> None:
    example = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    sections = _section_models()
    assert set(example) == set(sections)
    for name, model in sections.items():
        assert set(example[name]) == _keys(model), f"section {name} differs from Settings"


def test_every_key_in_the_example_has_a_comment() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or not line.startswith("  "):
            continue
        previous = lines[number - 1].strip()
        assert previous.startswith("#"), f"line {number + 1} ({stripped!r}) has no comment above"


def test_the_example_documents_the_environment_variables() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    for name in (
        "CARRIER_<SECTION>__<KEY>",
        "DATABASE_URL",
        "REDIS_URL",
        "DISCORD_TOKEN",
        "CARRIER_CONFIG",
        ".env",
    ):
        assert name in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("discord:\n  shard_ids: [1]\n", "shard_ids needs shard_count"),
        (
            "discord:\n  shard_count: 2\n  shard_ids: [0, 2]\n",
            "every shard id must be below shard_count (2)",
        ),
        ("discord:\n  shard_count: 2\n  shard_ids: [-1]\n", "discord.shard_ids.0 = -1"),
        ("discord:\n  shard_count: 4\n  shard_ids: [1, 1]\n", "shard_ids lists a shard twice"),
        ("discord:\n  shard_count: 0\n", "discord.shard_count = 0"),
    ],
)
def test_shard_ids_are_checked(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_shard_ids_within_the_count_load(tmp_path: Path) -> None:
    path = write_config(tmp_path, "discord:\n  shard_count: 4\n  shard_ids: [2, 3]\n")
    discord = load_settings(path).discord
    assert (discord.shard_count, discord.shard_ids) == (4, [2, 3])
    path.unlink()
    assert load_settings(None).discord.shard_ids == []  # default: every shard
