"""Deciding whether to answer: mention, reply, or the conversation clearly addressing the bot.

:func:`should_respond` is pure: everything it needs (the channel's recent messages, the
persona's names, the channel policy, the clock) is passed in, so every rule is testable and
every decision carries a reason.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from carrier.engine.messages import Decision, IncomingMessage
from carrier.settings import EngineSettings
from carrier.store.channels import ChannelPolicy
from carrier.store.messages import LoggedMessage

_QUESTION_START = re.compile(
    r"^\s*(who|what|when|where|why|how|which|whose|is|are|do|does|did|can|could|would|will|"
    r"should|have|has|was|were|shall|may)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class TriggerInputs:
    message: IncomingMessage
    bot_user_id: str
    names: Sequence[str]
    recent: Sequence[LoggedMessage]
    """The channel's messages before this one, newest first."""
    policy: ChannelPolicy
    now: datetime
    local_hour: int | None = None
    """The hour in the bot's time zone, for the guild's quiet hours (None: not checked)."""


@lru_cache(maxsize=256)
def _name_pattern(names: tuple[str, ...]) -> re.Pattern[str] | None:
    usable = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
    if not usable:
        return None
    alternatives = "|".join(re.escape(name) for name in usable)
    return re.compile(rf"(?<![\w@])({alternatives})(?!\w)", re.IGNORECASE)


def said_name(text: str, names: Sequence[str]) -> str | None:
    """The persona name or nickname said in ``text`` as a word, if any."""
    pattern = _name_pattern(tuple(names))
    if pattern is None:
        return None
    match = pattern.search(text)
    return match.group(1) if match else None


def looks_like_question(text: str) -> bool:
    stripped = text.strip()
    return stripped.endswith("?") or bool(_QUESTION_START.match(stripped))


def _bot_loop(recent: Sequence[LoggedMessage], limit: int) -> bool:
    """True when the last ``limit`` exchanges were already bot-to-bot."""
    exchanges = 0
    for logged in recent:
        if logged.is_self or logged.author_is_bot:
            if logged.is_self:
                exchanges += 1
            if exchanges >= limit:
                return True
        else:
            return False
    return False


def needs_recent(msg: IncomingMessage) -> bool:
    """Whether :func:`should_respond` may look at the channel's recent messages for ``msg``:
    a human's mention, reply to the bot or direct message is decided without them (only the
    bot-loop guard and contextual replies read them), so the engine skips reading them."""
    return msg.author_is_bot or not (msg.mentions_bot or msg.reply_to_bot or msg.is_direct)


def should_respond(inputs: TriggerInputs, settings: EngineSettings, rng: random.Random) -> Decision:
    msg = inputs.message
    if msg.author_id == inputs.bot_user_id:
        return Decision(False, "own_message")
    if msg.author_is_bot:
        if not settings.answer_bots:
            return Decision(False, "other_bot", "answer_bots is off")
        if _bot_loop(inputs.recent, settings.max_bot_exchanges):
            return Decision(
                False, "bot_loop_guard", f"{settings.max_bot_exchanges} bot exchanges in a row"
            )
    if not msg.text.strip():
        return Decision(False, "empty_message")
    if not inputs.policy.active:
        return Decision(False, "inactive_here", "deactivated for this guild or channel")
    if msg.mentions_bot:
        return Decision(True, "mention")
    if msg.reply_to_bot:
        return Decision(True, "reply_to_bot")
    if msg.is_direct:
        return Decision(True, "direct_message")
    if inputs.local_hour is not None and inputs.policy.is_quiet(inputs.local_hour):
        start, end = inputs.policy.quiet_hours or (0, 0)
        return Decision(False, "quiet_hours", f"{start:02d}:00-{end:02d}:00, mentions only")
    mode = inputs.policy.reply_mode
    if mode == "mention":
        return Decision(False, "not_addressed", "this channel answers mentions only")
    if mode == "contextual":
        decision = _contextual(inputs, settings)
        if decision is not None:
            return decision
    chance = inputs.policy.reply_chance
    if chance is None:
        chance = settings.reply_chance
    if chance > 0 and rng.random() < chance:
        return Decision(True, "random_chance", f"{chance:.0%}")
    return Decision(False, "not_addressed")


def _contextual(inputs: TriggerInputs, settings: EngineSettings) -> Decision | None:
    msg = inputs.message
    name = said_name(msg.text, inputs.names)
    if name is not None:
        return Decision(True, "name_said", name)
    if not inputs.recent:
        return None
    last = inputs.recent[0]
    age = (inputs.now - last.created_at).total_seconds()
    if last.is_self and age <= settings.question_window_seconds and looks_like_question(msg.text):
        return Decision(True, "question_after_bot", f"{age:.0f}s after its message")
    return _ongoing_exchange(inputs, settings)


def _ongoing_exchange(inputs: TriggerInputs, settings: EngineSettings) -> Decision | None:
    """The bot answered this user moments ago and nobody else has joined in since."""
    msg = inputs.message
    others = 0
    for logged in inputs.recent:
        age = (inputs.now - logged.created_at).total_seconds()
        if age > settings.conversation_window_seconds:
            return None
        if logged.is_self:
            if logged.reply_to_author_id == msg.author_id:
                return Decision(True, "ongoing_exchange", f"answered them {age:.0f}s ago")
            return None
        if logged.author_id != msg.author_id:
            others += 1
            if others > 1:
                return None
    return None
