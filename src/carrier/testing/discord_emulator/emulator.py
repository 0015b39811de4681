"""``DiscordEmulator``: the public face of the emulated Discord (see the package docstring)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiohttp import web

from carrier.testing.discord_emulator.building import WorldBuilding
from carrier.testing.discord_emulator.core import EmulatorCore
from carrier.testing.discord_emulator.driving import BotDriving
from carrier.testing.discord_emulator.rest import RestApi
from carrier.testing.discord_emulator.waiting import BotWaiting
from carrier.testing.loopback import LoopbackServer


class DiscordEmulator(WorldBuilding, BotDriving, BotWaiting, LoopbackServer):
    """A local Discord (gateway websocket + REST API v10) on 127.0.0.1 for an unmodified
    discord.py client. Build the world with ``add_*``, drive the bot with ``send_message`` /
    ``invoke_command`` / ``disconnect``..., and inspect or await what the bot did."""

    def __init__(
        self,
        *,
        bot_user_id: int | None = None,
        bot_name: str = "Finnegan",
        token: str | None = None,
        recommended_shards: int = 1,
    ) -> None:
        """``token``: if set, the only token REST and IDENTIFY accept (else any); the bot's
        user id is also the application id, as on Discord."""
        LoopbackServer.__init__(self, host="127.0.0.1", port=0, description="DiscordEmulator")
        EmulatorCore.__init__(
            self,
            bot_user_id=bot_user_id,
            bot_name=bot_name,
            token=token,
            recommended_shards=recommended_shards,
            resume_url=lambda: self.url.replace("http://", "ws://") + "/resume-gateway",
        )
        self._returned_messages = set()
        self._author_cursor = {}
        self._returned_requests = set()
        self._returned_presences = set()
        self._rest = RestApi(self)

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[self._rest.middleware], client_max_size=64 * 2**20)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/resume-gateway", self.gateway.handle)
        self._rest.add_routes(app.router)
        return app

    async def stop(self) -> None:
        await self.gateway.close_all()
        await super().stop()

    @property
    def gateway_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/gateway"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py's REST base and default gateway at this emulator."""
        import discord.gateway
        import discord.http
        import yarl

        old_base = discord.http.Route.BASE
        old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
        discord.http.Route.BASE = f"{self.url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            discord.http.Route.BASE = old_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


__all__ = ["DiscordEmulator"]
