"""The bot's cogs, one per concern; each is given the shared :class:`Carrier` services."""

from __future__ import annotations

from carrier.clients.discord.cogs.admin import AdminCog, TrainCog
from carrier.clients.discord.cogs.events import EventsCog
from carrier.clients.discord.cogs.memory_tasks import MemoryTasksCog
from carrier.clients.discord.cogs.moderation import ModerationCog
from carrier.clients.discord.cogs.settings import SettingsCog
from carrier.clients.discord.cogs.utility import UtilityCog

ALL_COGS = (
    EventsCog,
    AdminCog,
    TrainCog,
    MemoryTasksCog,
    ModerationCog,
    SettingsCog,
    UtilityCog,
)

__all__ = [
    "ALL_COGS",
    "AdminCog",
    "EventsCog",
    "MemoryTasksCog",
    "ModerationCog",
    "SettingsCog",
    "TrainCog",
    "UtilityCog",
]
