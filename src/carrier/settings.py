"""One validated configuration: ``config.yaml`` + environment variables + ``.env``.

Precedence, highest first: explicit keyword arguments (tests), environment variables
(``CARRIER_<SECTION>__<KEY>``, plus the well-known ``DATABASE_URL``, ``REDIS_URL`` and
``DISCORD_TOKEN``), ``.env``, ``config.yaml``, defaults.

A wrong value raises :class:`ConfigError` naming the key, the offending value and what is
allowed.  Secrets are :class:`pydantic.SecretStr`, so they never show in a repr, a log line or
an error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config.yaml")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/carrier.db"


class ConfigError(Exception):
    """The configuration is invalid; the message is meant for the operator, as is."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class AgentSettings(_Section):
    id: str = Field("fish", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    character_file: Path = Path("characters/fish.yaml")
    nicknames: list[str] = Field(default_factory=list)


_URL_PREFIXES = (
    "sqlite+aiosqlite://",
    "postgresql+asyncpg://",
    "sqlite://",
    "postgresql://",
    "postgres://",
)


def _check_database_url(value: str) -> str:
    if not value.startswith(_URL_PREFIXES):
        raise ValueError("must start with one of " + ", ".join(_URL_PREFIXES))
    return value


def mask_url(value: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://user:***@host`` (for messages and logs)."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", value)


class DatabaseSettings(_Section):
    # repr=False: a PostgreSQL URL may carry a password.
    url: str = Field(DEFAULT_DATABASE_URL, repr=False)
    echo: bool = False
    busy_timeout_ms: int = Field(5000, ge=0, le=600_000)
    # A PostgreSQL that refuses or cannot be reached at start (still starting, restarting)
    # is tried this many times in all, the pause doubling from connect_retry_seconds (at
    # most 30 s), before the start fails with one clear line.
    connect_attempts: int = Field(5, ge=1, le=100)
    connect_retry_seconds: float = Field(1.0, ge=0, le=60)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        return _check_database_url(value)

    @property
    def async_url(self) -> str:
        """The URL with the async driver SQLAlchemy needs."""
        url = self.url
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url


class EngineSettings(_Section):
    short_term_hours: float = Field(24.0, gt=0, le=24 * 30)
    context_token_budget: int = Field(1500, ge=50, le=1_000_000)
    conversation_window_seconds: int = Field(180, ge=0, le=86_400)
    question_window_seconds: int = Field(300, ge=0, le=86_400)
    answer_bots: bool = False
    max_bot_exchanges: int = Field(3, ge=0, le=100)
    reply_chance: float = Field(0.0, ge=0.0, le=1.0)
    max_message_chars: int = Field(4000, ge=100, le=1_000_000)
    max_reply_chars: int = Field(2000, ge=50, le=100_000)


class RelationshipSettings(_Section):
    decay_per_hour: float = Field(0.05, ge=0.0, le=10.0)
    sensitivity: float = Field(1.0, ge=0.0, le=10.0)


class MoodSettings(_Section):
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA time zone such as UTC or Europe/Paris") from exc
        return value


class MarkovSettings(_Section):
    state_size: int = Field(2, ge=1, le=3)
    max_words: int = Field(30, ge=3, le=200)
    tries: int = Field(20, ge=1, le=500)
    persona_weight: float = Field(0.25, ge=0.0, le=1.0)


class RateLimitSettings(_Section):
    per_user: str = "30/minute"
    global_: str = Field("10000/minute", alias="global")

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)

    @field_validator("per_user", "global_")
    @classmethod
    def _parseable(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError("must be a rate such as '30/minute' or '10000 per hour'") from exc
        return value


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_lines: bool = False


_SNOWFLAKE = r"^[0-9]{1,20}$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class DiscordSettings(_Section):
    """The Discord client (``carrier.clients.discord``), started by ``carrier run`` when a
    token is set."""

    token: SecretStr | None = None
    # Slash commands are synced to these guilds (instant); empty: globally (up to an hour).
    command_guild_ids: list[Annotated[str, Field(pattern=_SNOWFLAKE)]] = Field(default_factory=list)
    # Besides members with Manage Server: these roles and users may use the admin commands.
    admin_role_ids: list[Annotated[str, Field(pattern=_SNOWFLAKE)]] = Field(default_factory=list)
    admin_user_ids: list[Annotated[str, Field(pattern=_SNOWFLAKE)]] = Field(default_factory=list)
    # Sharding: null shard_count runs one plain client; a number runs AutoShardedClient, with
    # shard_ids naming the shards this process runs (empty: all of them).
    shard_count: int | None = Field(None, ge=1, le=10_000)
    shard_ids: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    # Proactive engagement: every interval, per active channel, with this chance.
    proactive_interval_minutes: float = Field(30.0, gt=0, le=10_080)
    proactive_chance: float = Field(0.1, ge=0.0, le=1.0)
    # Daily consolidation and the new status text, at this local hour (mood.timezone).
    consolidation_hour: int = Field(4, ge=0, le=23)

    @model_validator(mode="after")
    def _shards_within_count(self) -> DiscordSettings:
        if self.shard_ids and self.shard_count is None:
            raise ValueError("shard_ids needs shard_count")
        if self.shard_count is not None and any(i >= self.shard_count for i in self.shard_ids):
            raise ValueError(f"every shard id must be below shard_count ({self.shard_count})")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids lists a shard twice")
        return self


class ApiSettings(_Section):
    """The HTTP/WebSocket API and web console (``carrier serve``; ``carrier run`` also starts
    it when ``enabled``).  API keys live hashed in the database: ``carrier apikey create``."""

    enabled: bool = False
    host: str = Field("127.0.0.1", min_length=1, max_length=255)
    port: int = Field(8080, ge=1, le=65_535)
    # Origins allowed by CORS; empty: CORS closed (the console is same-origin).
    cors_origins: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=100_000_000)
    max_ws_message_bytes: int = Field(65_536, ge=1024, le=10_000_000)
    # How long a key that checked out stays trusted without another database read: a
    # revocation takes effect within this time (0: read the database on every request).
    key_cache_seconds: float = Field(1.0, ge=0, le=300)


class WebhookSettings(_Section):
    """Outbound webhooks: a signed POST to every URL on ``reply`` and ``consolidation``
    events.  The signing secret comes from the environment variable ``secret_env`` names."""

    urls: list[str] = Field(default_factory=list)
    secret_env: str = Field("CARRIER_WEBHOOK_SECRET", pattern=_ENV_NAME)
    timeout_seconds: float = Field(10.0, gt=0, le=600)
    max_attempts: int = Field(5, ge=1, le=50)
    backoff_seconds: float = Field(1.0, ge=0, le=3600)

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} must be an http:// or https:// URL")
        return urls


_DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


class ProviderSettings(_Section):
    """One LLM provider of the chain.  The API key itself never goes in the config: only the
    name of the environment variable (or ``.env`` entry) that holds it."""

    kind: Literal["openai", "anthropic"]
    name: str = Field(default="", pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    model: str = Field(min_length=1, max_length=200)
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, pattern=_ENV_NAME)
    max_tokens: int = Field(default=300, ge=1, le=200_000)
    temperature: float = Field(default=0.9, ge=0.0, le=2.0)
    context_window: int = Field(default=8192, ge=256, le=10_000_000)
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    stream: bool = False

    @model_validator(mode="before")
    @classmethod
    def _defaults_by_kind(cls, data: Any) -> Any:
        # Unset api_key_env means the kind's usual variable; an explicit null means "no key"
        # (a local server such as Ollama).  An unset name is the kind.
        if isinstance(data, dict):
            data = dict(data)
            kind = data.get("kind")
            if "api_key_env" not in data and kind in _DEFAULT_KEY_ENV:
                data["api_key_env"] = _DEFAULT_KEY_ENV[kind]
            if not data.get("name") and isinstance(kind, str):
                data["name"] = kind
            # A key pasted where its variable's name belongs must not be echoed back by the
            # error message: replace it before validation reports it.
            value = data.get("api_key_env")
            if isinstance(value, str) and not re.match(_ENV_NAME, value):
                data["api_key_env"] = "<hidden: not a variable name>"
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:11434/v1")
        return value


LLMMode = Literal["markov", "llm", "hybrid"]


class ModelPrice(_Section):
    """USD per million tokens, for the usage ledger's cost estimate."""

    input_per_million: float = Field(ge=0, le=10_000)
    output_per_million: float = Field(ge=0, le=10_000)


class LLMSettings(_Section):
    providers: list[ProviderSettings] = Field(default_factory=list)
    mode: LLMMode | None = None
    circuit_failures: int = Field(default=3, ge=1, le=1000)
    circuit_cooldown_seconds: float = Field(default=30.0, ge=0, le=86_400)
    hybrid_samples: int = Field(default=3, ge=0, le=20)
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_validator("providers")
    @classmethod
    def _unique_names(cls, providers: list[ProviderSettings]) -> list[ProviderSettings]:
        seen: set[str] = set()
        for provider in providers:
            if provider.name in seen:
                raise ValueError(
                    f"two providers are named {provider.name!r}; give each a unique name"
                )
            seen.add(provider.name)
        return providers

    @model_validator(mode="after")
    def _providers_for_mode(self) -> LLMSettings:
        if self.mode in ("llm", "hybrid") and not self.providers:
            raise ValueError(f"mode {self.mode!r} needs at least one entry in llm.providers")
        return self

    @property
    def effective_mode(self) -> LLMMode:
        """``mode`` as set; unset: ``llm`` with providers configured, else ``markov``."""
        if self.mode is not None:
            return self.mode
        return "llm" if self.providers else "markov"


class InstagramSettings(_Section):
    """Posting media to Instagram.  The credentials are not here: they come from the
    environment (or ``.env``) as INSTAGRAM_ACCOUNT_ID, INSTAGRAM_ACCESS_TOKEN, FTP_SERVER,
    FTP_USERNAME, FTP_PASSWORD and HTTP_SERVER (see ``carrier.clients.instagram.credentials``).
    """

    graph_api_url: str = "https://graph.facebook.com"
    graph_api_version: str = Field("v25.0", pattern=r"^v[0-9]+\.[0-9]+$")
    ftp_folder: str = Field("", max_length=500)
    ftp_tls: bool = True
    ftp_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    upload_attempts: int = Field(4, ge=1, le=20)
    poll_interval_seconds: float = Field(5.0, gt=0, le=600)
    poll_timeout_seconds: float = Field(300.0, gt=0, le=86_400)
    posts_per_24h: int = Field(25, ge=1, le=100)
    max_hashtags: int = Field(30, ge=0, le=30)
    max_mentions: int = Field(20, ge=0, le=20)
    max_video_mb: int = Field(300, ge=1, le=1024)

    @field_validator("graph_api_url")
    @classmethod
    def _graph_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. https://graph.facebook.com")
        return value.rstrip("/")


class EmbeddingSettings(_Section):
    """How text becomes vectors for long-term memory: ``minilm-onnx`` (all-MiniLM-L6-v2, run
    locally and offline) or ``openai`` (an OpenAI-compatible embeddings endpoint).  As for the
    LLM providers, the API key never goes in the config, only the name of the environment
    (or ``.env``) variable that holds it."""

    provider: Literal["minilm-onnx", "openai"] = "minilm-onnx"
    cache_dir: Path = Path("data/models")
    batch_size: int = Field(64, ge=1, le=2048)
    model: str = Field("text-embedding-3-small", min_length=1, max_length=200)
    base_url: str | None = None
    api_key_env: str | None = Field("OPENAI_API_KEY", pattern=_ENV_NAME)
    dimensions: int | None = Field(None, ge=1, le=65_536)
    timeout_seconds: float = Field(30.0, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _hide_pasted_key(cls, data: Any) -> Any:
        # A key pasted where its variable's name belongs must not be echoed by the error.
        if isinstance(data, dict):
            value = data.get("api_key_env")
            if isinstance(value, str) and not re.match(_ENV_NAME, value):
                data = {**data, "api_key_env": "<hidden: not a variable name>"}
        return data

    @field_validator("base_url")
    @classmethod
    def _embeddings_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:11434/v1")
        return value


class MemorySettings(_Section):
    """Long-term memory (``carrier.memory``): how facts merge and where they are used."""

    # A new fact at least this similar (cosine) to one the user already has is the same fact.
    fact_similarity_threshold: float = Field(0.85, ge=0.5, le=1.0)
    # Facts learned in one guild are used only there unless this is true.
    share_across_guilds: bool = False
    # With an LLM: the user's facts at least this similar to a new one (but below the
    # same-fact threshold) are shown to the LLM, which says whether the new one replaces them.
    judge_min_similarity: float = Field(0.5, ge=0.0, le=1.0)
    # Related archived messages put into the prompt of a reply (0: none).
    archive_results: int = Field(3, ge=0, le=20)


VectorBackend = Literal["sqlite", "pgvector", "chroma"]


class VectorSettings(_Section):
    """Where long-term fact vectors are searched (``carrier.memory.vectors``)."""

    backend: VectorBackend | None = None
    chroma_path: Path = Path("data/chroma")
    hnsw_ef_search: int = Field(200, ge=10, le=1000)

    def backend_for(self, database_url: str) -> VectorBackend:
        """``backend`` as set; unset: ``pgvector`` on PostgreSQL, else ``sqlite``."""
        if self.backend is not None:
            return self.backend
        return "pgvector" if database_url.startswith(("postgresql", "postgres")) else "sqlite"


class Settings(BaseSettings):
    """The whole configuration.  Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="CARRIER_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        # .env may hold variables for other tools; only CARRIER_* ones (and the well-known
        # names below) are ours, and a misspelt CARRIER_* one is reported as unknown.
        dotenv_filtering="match_prefix",
        extra="forbid",
        validate_default=True,
    )

    agent: AgentSettings = Field(default_factory=AgentSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    relationships: RelationshipSettings = Field(default_factory=RelationshipSettings)
    mood: MoodSettings = Field(default_factory=MoodSettings)
    markov: MarkovSettings = Field(default_factory=MarkovSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    instagram: InstagramSettings = Field(default_factory=InstagramSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    # Well-known variables operators already have in their environment.
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DATABASE_URL", "CARRIER_DATABASE_URL"),
        repr=False,
    )
    redis_url: SecretStr | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "CARRIER_REDIS_URL")
    )
    discord_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("DISCORD_TOKEN", "CARRIER_DISCORD_TOKEN")
    )

    @field_validator("database_url")
    @classmethod
    def _known_database_driver(cls, value: str | None) -> str | None:
        return None if value is None else _check_database_url(value)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("CARRIER_CONFIG", str(DEFAULT_CONFIG_FILE))
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=config_file)
        return init_settings, env_settings, dotenv_settings, yaml_source

    @property
    def effective_database_url(self) -> str:
        """``DATABASE_URL`` wins over ``database.url``; always with an async driver."""
        if self.database_url:
            return DatabaseSettings(url=self.database_url).async_url
        return self.database.async_url

    @property
    def effective_discord_token(self) -> SecretStr | None:
        return self.discord_token or self.discord.token


# The last part of a key that holds a secret: discord.token, DISCORD_TOKEN, redis_url, ...
_SECRET_KEY = re.compile(r"(^|_)(token|password|secret|api_key|redis_url)$|^discord$", re.I)


def _origin(loc: tuple[Any, ...], loaded: dict[str, Any] | None, source: str) -> str:
    """The config file when it holds the key, else the environment (or .env)."""
    node: Any = loaded
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return "environment/.env"
        node = node[part]
    return source


def _describe(error: dict[str, Any], source: str, loaded: dict[str, Any] | None = None) -> str:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    origin = _origin(loc, loaded, source) if loc else source
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{key}' (check its spelling; see config.example.yaml)"
    last = str(loc[-1]) if loc else ""
    if _SECRET_KEY.search(last):
        shown = "<hidden>"
    elif isinstance(value, dict):
        shown = "(a section)"
    elif isinstance(value, str) and "url" in last.lower():
        shown = repr(mask_url(value))
    else:
        shown = repr(value)
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return f"{origin}: {key} = {shown}: {message}"


def environment_with_dotenv(env_file: Path | str = ".env") -> dict[str, str]:
    """The process environment over the ``.env`` file (where operators keep API keys)."""
    from dotenv import dotenv_values

    merged = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    merged.update(os.environ)
    return merged


def llm_api_keys(
    llm: LLMSettings, environ: Mapping[str, str] | None = None
) -> dict[str, SecretStr | None]:
    """Each provider's API key, by provider name, read from its ``api_key_env`` variable
    (``None`` for a provider configured with ``api_key_env: null``).

    ``environ`` defaults to :func:`environment_with_dotenv`.  A variable that is missing or
    empty raises :class:`ConfigError` naming the variable, never showing any value.
    """
    env = environment_with_dotenv() if environ is None else environ
    keys: dict[str, SecretStr | None] = {}
    missing: list[str] = []
    for index, provider in enumerate(llm.providers):
        if provider.api_key_env is None:
            keys[provider.name] = None
            continue
        value = env.get(provider.api_key_env, "").strip()
        if not value:
            missing.append(
                f"llm.providers.{index} ({provider.name}): the environment variable "
                f"{provider.api_key_env} named by api_key_env is not set; set it in the "
                "environment or .env, or use api_key_env: null for a server that needs no key"
            )
            continue
        keys[provider.name] = SecretStr(value)
    if missing:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(missing))
    return keys


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration, or raise :class:`ConfigError`.

    ``config_file`` defaults to ``$CARRIER_CONFIG`` or ``./config.yaml``; a missing default
    file is fine (defaults apply), a missing explicit file is an error.
    """
    source = str(config_file or os.environ.get("CARRIER_CONFIG", DEFAULT_CONFIG_FILE))
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
    path = Path(source)
    loaded: Any = None
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not UTF-8 text") from None
        except yaml.YAMLError as exc:
            # Not str(exc): its snippet of the offending line could show a secret.
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
    previous = os.environ.get("CARRIER_CONFIG")
    os.environ["CARRIER_CONFIG"] = source
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(err, source, loaded) for err in exc.errors()]  # type: ignore[arg-type]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    finally:
        if previous is None:
            os.environ.pop("CARRIER_CONFIG", None)
        else:
            os.environ["CARRIER_CONFIG"] = previous
    if settings.llm.effective_mode != "markov":
        # Fail at start, not at the first message, when a provider's key is missing.
        llm_api_keys(settings.llm)
    return settings
