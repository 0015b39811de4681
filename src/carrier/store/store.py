"""The Store: one async engine and the repositories that share it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from carrier.store.agents import AgentRepository
from carrier.store.apikeys import ApiKeyRepository
from carrier.store.channels import ChannelSettingsRepository, EmoteRepository
from carrier.store.database import Database
from carrier.store.facts import FactRepository
from carrier.store.instagram import InstagramPostRepository
from carrier.store.markov import MarkovRepository
from carrier.store.messages import MessageLogRepository
from carrier.store.persona import PersonaRepository
from carrier.store.relationships import RelationshipRepository
from carrier.store.revision import ConfigRevisionRepository
from carrier.store.state import GlobalStateRepository
from carrier.store.tickets import TicketRepository
from carrier.store.usage import UsageRepository
from carrier.store.users import UserRepository


class Store:
    """Every repository over one engine.  Build with an engine; close when done."""

    def __init__(self, engine: AsyncEngine | Database) -> None:
        if not isinstance(engine, Database):
            engine = Database(engine)
        self.engine = engine
        self.agents = AgentRepository(engine)
        self.users = UserRepository(engine)
        self.persona = PersonaRepository(engine)
        self.messages = MessageLogRepository(engine)
        self.relationships = RelationshipRepository(engine)
        self.state = GlobalStateRepository(engine)
        self.channels = ChannelSettingsRepository(engine)
        self.emotes = EmoteRepository(engine)
        self.markov = MarkovRepository(engine)
        self.instagram = InstagramPostRepository(engine)
        self.usage = UsageRepository(engine)
        self.facts = FactRepository(engine)
        self.tickets = TicketRepository(engine)
        self.api_keys = ApiKeyRepository(engine)
        self.config_revision = ConfigRevisionRepository(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def close(self) -> None:
        await self.engine.dispose()
