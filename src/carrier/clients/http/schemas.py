"""Request and response bodies: the OpenAPI schema is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9_.:@#-]{1,100}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- chat ----------------------------------------------------------------------------------------


class ChatMessage(_Body):
    """One message said in a channel."""

    author_id: str = Field(pattern=ID_PATTERN, description="Who speaks (any stable id).")
    author_name: str | None = Field(
        None, min_length=1, max_length=100, description="Display name (default: the id)."
    )
    text: str = Field(min_length=1, max_length=100_000)
    guild_id: str | None = Field(
        None, pattern=ID_PATTERN, description="The server the channel belongs to (default: http)."
    )
    message_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Your id for the message (default: generated)."
    )
    mentions_bot: bool | None = Field(
        None, description="Whether the message mentions the bot (default: '@Name' in the text)."
    )
    reply_to_message_id: str | None = Field(None, pattern=ID_PATTERN)
    reply_to_bot: bool = False


class DecisionOut(BaseModel):
    respond: bool
    reason: str
    detail: str = ""


class ReplyOut(BaseModel):
    id: str
    text: str
    reason: str = Field(description="Why the bot answered (mention, reply_to_bot, name, ...).")
    source: str = Field(description="What produced the text (llm:<provider>, markov, notice).")
    reply_to_message_id: str | None


class ChatResult(BaseModel):
    message_id: str
    channel_id: str
    author_id: str
    author_name: str
    text: str
    decision: DecisionOut
    reply: ReplyOut | None
    context: dict[str, Any] = Field(
        description="What was assembled for the reply: persona, mood, relationship, facts, ..."
    )
    timings_ms: dict[str, float]


class LoggedOut(BaseModel):
    message_id: str
    author_id: str
    author_name: str
    is_bot: bool
    text: str
    created_at: datetime


class AgentOut(BaseModel):
    id: str
    name: str
    nicknames: list[str]


# -- persona -------------------------------------------------------------------------------------


class PersonaItemOut(BaseModel):
    id: int
    kind: str
    text: str
    position: int


class PersonaOut(BaseModel):
    name: str
    kinds: list[str]
    items: list[PersonaItemOut]


PersonaKind = Literal[
    "nickname", "trait", "lore", "fact", "bio", "topic", "style", "example", "post_example"
]


class PersonaItemIn(_Body):
    kind: PersonaKind
    text: str = Field(min_length=1, max_length=10_000)


class PersonaItemEdit(_Body):
    text: str = Field(min_length=1, max_length=10_000)


# -- users, memories, relationships ----------------------------------------------------------------


class FactOut(BaseModel):
    id: int
    user_id: str
    guild_id: str | None
    fact: str
    category: str
    first_mentioned: datetime
    last_mentioned: datetime
    reference_count: int
    superseded_by: int | None


class FactIn(_Body):
    fact: str = Field(min_length=1, max_length=2000)
    category: str = Field("general", min_length=1, max_length=50)
    guild_id: str | None = Field(None, pattern=ID_PATTERN)


class FactWritten(BaseModel):
    fact_id: int
    outcome: str = Field(description="new, reinforced or superseding")


class RelationshipOut(BaseModel):
    user_id: str
    anger: float
    rapport: float
    trust: float
    formality: float
    words: str


class RelationshipEdit(_Body):
    """Metrics to set; the others keep their current (decayed) value."""

    anger: float | None = Field(None, ge=0, le=10)
    rapport: float | None = Field(None, ge=0, le=10)
    trust: float | None = Field(None, ge=0, le=10)
    formality: float | None = Field(None, ge=-5, le=5)


class NicknameOut(BaseModel):
    nickname: str
    first_seen: datetime
    last_seen: datetime


class UserOut(BaseModel):
    user_id: str
    name: str
    is_bot: bool
    first_seen: datetime
    last_seen: datetime
    message_count: int
    nicknames: list[NicknameOut]
    relationship: RelationshipOut
    facts: list[FactOut]


class ForgottenOut(BaseModel):
    facts: int
    messages: int
    relationship: bool


# -- state and mood ------------------------------------------------------------------------------

STATE_KEY = r"^[A-Za-z0-9_.:-]{1,100}$"


class StateValue(_Body):
    value: str = Field(max_length=10_000)


class StateEntry(BaseModel):
    key: str
    value: str


class MoodOut(BaseModel):
    day: str
    anger: int
    happiness: int
    energy: int
    curiosity: int
    words: str


class MoodEdit(_Body):
    """Today's mood values to set (0-10); the others keep today's value."""

    anger: int | None = Field(None, ge=0, le=10)
    happiness: int | None = Field(None, ge=0, le=10)
    energy: int | None = Field(None, ge=0, le=10)
    curiosity: int | None = Field(None, ge=0, le=10)


class ConsolidationOut(BaseModel):
    messages_archived: int
    facts_new: int
    facts_reinforced: int
    facts_superseded: int
    chunks: int
    skipped_locked: bool
    errors: list[str]


# -- health --------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
