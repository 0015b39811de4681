"""INTERACTION_CREATE payloads for slash commands: option types taken from the synced
command, ``resolved`` users/members/channels/roles, and the invoker's computed permissions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from carrier.testing.discord_emulator.model import JSON

if TYPE_CHECKING:
    from carrier.testing.discord_emulator.core import EmulatorCore

SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
USER, CHANNEL, ROLE, MENTIONABLE = 6, 7, 8, 9
ATTACHMENT_SIZE_LIMIT = 26_214_400


def _find_option(schema: list[JSON], name: str, *, kind: int | None = None) -> JSON:
    for option in schema:
        if option["name"] == name and (kind is None or option["type"] == kind):
            return option
    known = [o["name"] for o in schema]
    raise ValueError(f"option {name!r} is not in the synced command (known: {known})")


def build_interaction(
    emulator: EmulatorCore,
    *,
    interaction_id: int,
    token: str,
    command: JSON,
    guild_id: int | None,
    channel_id: int,
    user_id: int,
    options: list[JSON],
    subcommand_group: str | None,
    subcommand: str | None,
) -> JSON:
    world = emulator.world
    channel = world.channels[channel_id]
    schema: list[JSON] = command.get("options") or []
    resolved: dict[str, dict[str, Any]] = {}
    leaf_schema = schema
    group_option = sub_option = None
    if subcommand_group is not None:
        group_option = _find_option(schema, subcommand_group, kind=SUB_COMMAND_GROUP)
        leaf_schema = group_option.get("options") or []
    if subcommand is not None:
        sub_option = _find_option(leaf_schema, subcommand, kind=SUB_COMMAND)
        leaf_schema = sub_option.get("options") or []

    values: list[JSON] = []
    given = {o["name"] for o in options}
    for option in leaf_schema:
        if option.get("required") and option["name"] not in given:
            raise ValueError(f"required option {option['name']!r} missing")
    for given_option in options:
        spec = _find_option(leaf_schema, given_option["name"])
        kind = spec["type"]
        value = given_option["value"]
        if kind in (USER, CHANNEL, ROLE, MENTIONABLE):
            value = str(value)
            _resolve(emulator, resolved, kind, int(value), guild_id)
        values.append({"name": spec["name"], "type": kind, "value": value})

    data_options: list[JSON] = values
    if sub_option is not None:
        data_options = [{"name": sub_option["name"], "type": SUB_COMMAND, "options": values}]
    if group_option is not None:
        data_options = [
            {"name": group_option["name"], "type": SUB_COMMAND_GROUP, "options": data_options}
        ]
    data: JSON = {
        "id": command["id"],
        "name": command["name"],
        "type": command.get("type", 1),
        "options": data_options,
    }
    if command.get("guild_id"):
        data["guild_id"] = command["guild_id"]
    if resolved:
        data["resolved"] = resolved

    payload: JSON = {
        "id": str(interaction_id),
        "application_id": str(emulator.application_id),
        "type": 2,
        "data": data,
        "channel_id": str(channel_id),
        "channel": channel.payload(world) | {"permissions": "0"},
        "token": token,
        "version": 1,
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        "context": 0 if guild_id is not None else 1,
    }
    if guild_id is not None:
        member = world.members[(guild_id, user_id)]
        permissions = world.channel_permissions(channel_id, user_id)
        payload |= {
            "guild_id": str(guild_id),
            "guild_locale": "en-US",
            "guild": {"id": str(guild_id), "locale": "en-US", "features": []},
            "member": member.payload(world) | {"permissions": str(permissions)},
            "app_permissions": str(world.channel_permissions(channel_id, emulator.bot_user_id)),
            "authorizing_integration_owners": {"0": str(guild_id)},
        }
        payload["channel"]["permissions"] = str(permissions)
    else:
        payload |= {
            "user": world.users[user_id].payload(),
            "app_permissions": "0",
            "authorizing_integration_owners": {"1": str(user_id)},
        }
    return payload


def _resolve(
    emulator: EmulatorCore,
    resolved: dict[str, dict[str, Any]],
    kind: int,
    target: int,
    guild_id: int | None,
) -> None:
    world = emulator.world
    if kind in (USER, MENTIONABLE) and target in world.users:
        resolved.setdefault("users", {})[str(target)] = world.users[target].payload()
        member = world.members.get((guild_id, target)) if guild_id else None
        if member is not None:
            member_data = member.payload(world, with_user=False)
            member_data["permissions"] = str(world.base_permissions(guild_id or 0, target))
            resolved.setdefault("members", {})[str(target)] = member_data
    elif kind in (ROLE, MENTIONABLE) and target in world.roles:
        resolved.setdefault("roles", {})[str(target)] = world.roles[target].payload()
    elif kind == CHANNEL and target in world.channels:
        channel = world.channels[target]
        resolved.setdefault("channels", {})[str(target)] = channel.payload(world) | {
            "permissions": str(world.channel_permissions(target, emulator.bot_user_id))
        }
    else:
        raise ValueError(f"option value {target} is not a known user, role or channel")
