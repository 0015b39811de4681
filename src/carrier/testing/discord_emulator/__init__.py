"""A local Discord for tests and benchmarks: the gateway websocket and the REST API v10 on
127.0.0.1, enough for an unmodified discord.py 2.7 client (needs the ``test`` extra: aiohttp).

Usage::

    async with DiscordEmulator(bot_name="Finnegan") as discord_:
        guild = discord_.add_guild("Pub")                 # @everyone, bot role, owner, bot
        general = discord_.add_channel(guild.id, "general")
        quiet = discord_.add_channel(guild.id, "quiet", bot_can_send=False)
        alice = discord_.add_user("alice")
        discord_.add_member(guild.id, alice.id)
        client = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.01)
        with discord_.patch_discord():                   # Route.BASE + DEFAULT_GATEWAY
            task = asyncio.create_task(client.start("any-token"))
            await discord_.wait_until_ready()
            sent = await discord_.send_message(general.id, alice.id, "hi <@BOT_ID>")
            reply = await discord_.wait_for_message(channel_id=general.id)
            assert reply["message_reference"]["message_id"] == sent["id"]
            await client.close(); await task

World building (``add_guild/add_role/update_role/add_channel/add_user/add_member/
add_emoji``) works before or after the bot connects; afterwards the matching events
(GUILD_CREATE, GUILD_ROLE_CREATE/UPDATE, CHANNEL_CREATE/THREAD_CREATE, GUILD_MEMBER_ADD,
GUILD_EMOJIS_UPDATE) are sent. ``add_guild(..., bot_permissions=, bot_role_position=)`` sets
the bot's managed role (``guild.bot_role_id``); ``Permission`` has the bits.

Driving the bot: ``send_message`` (mentions, replies, attachments, stickers, webhooks, DMs,
system types), ``edit_message``, ``delete_message``, ``add_reaction``, ``update_member``,
``remove_member``, ``remove_guild``, ``invoke_command`` (-> ``Interaction``: ``await
i.response()``, ``await i.followups(n)``, ``await i.wait_for_edit(pred)``, ``i.edits``,
``i.original``), ``dispatch`` (any raw event), ``disconnect(resume=True|False, abrupt=...)``
and ``async with disconnected():`` (events sent inside are replayed on RESUME),
``fail_next(method, path_regex, status, code)`` (inject a REST error or a 429),
``closed_dms`` (users whose DMs answer 403 50007), ``gateway.privileged_intents_enabled``
(asking for others closes with 4014), ``settle()`` (every queued frame written).

What the bot did: ``messages`` (channel id -> payloads, everyone's; the bot's carry the
``allowed_mentions`` it sent), ``wait_for_message``, ``rest_log`` / ``wait_for_request``
(``RecordedRequest``: method, path under /api/v10, json, headers, URL-decoded ``reason``,
status, response), ``presences`` / ``wait_for_presence``, ``typing``, ``reactions``,
``commands`` (None = global, else guild id -> synced commands), ``interactions``,
``audit_log``, ``deleted_messages``, ``world.bans``, ``gateway.identifies/resumes/
invalidated/connections``, ``server_errors`` (requests the emulator could not read: assert
it stays empty). Each ``wait_for_*`` returns the oldest match it has not returned before,
so nothing that happened before the call is missed.

Realism: Discord's error bodies (``{"code": 50013, "message": "Missing Permissions"}``),
permissions from roles and overwrites (kick/ban/timeout/nick/roles also need the bot's top
role above the target's; nobody outranks the owner), intents (no MESSAGE_CONTENT: empty
content unless mentioned or DM; no GUILD_MEMBERS: no member events and only the bot in
GUILD_CREATE), shards (``(guild_id >> 22) % count``), sequence numbers and RESUME replay
(the last ``gateway.replay_limit`` = 10,000 events per session; older: INVALID_SESSION).
Not emulated: voice, component interactions (buttons, selects, modals are only recorded),
``default_member_permissions`` (``invoke_command`` lets anyone run any synced command, as a
guild's integration overrides can; the bot must check), rate limits (only injected ones).
discord.py waits ``guild_ready_timeout`` (2 s) after the last GUILD_CREATE and 5 s in
``before_identify_hook`` before a non-initial IDENTIFY: pass ``guild_ready_timeout=0.01`` and
override the hook in tests.
"""

from carrier.testing.discord_emulator.emulator import DiscordEmulator
from carrier.testing.discord_emulator.errors import ApiError
from carrier.testing.discord_emulator.flags import Intent, Permission
from carrier.testing.discord_emulator.model import (
    Channel,
    Emoji,
    Guild,
    Member,
    Role,
    User,
)
from carrier.testing.discord_emulator.records import Interaction, RecordedRequest

__all__ = [
    "ApiError",
    "Channel",
    "DiscordEmulator",
    "Emoji",
    "Guild",
    "Intent",
    "Interaction",
    "Member",
    "Permission",
    "RecordedRequest",
    "Role",
    "User",
]
