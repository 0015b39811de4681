"""Character files: Carrier YAML and ElizaOS JSON, read into one validated :class:`Character`.

Two formats are read, told apart by their content, not by the file name:

* **Carrier YAML** (``characters/fish.yaml`` is the commented example).  Its keys are exactly
  the fields of :class:`Character`; an unknown key is an error that names it, so a typo never
  silently drops part of a persona.
* **ElizaOS JSON**, so people can bring the characters they already have.  A file is read as
  ElizaOS when it has ElizaOS keys (``adjectives``, ``messageExamples``, ``postExamples``,
  ``knowledge``, ``clients``, ``modelProvider``, ...) and no Carrier-only keys (``traits``,
  ``facts``, ``message_examples``, ``post_examples``); a file with neither is ElizaOS when it
  is a JSON object and Carrier YAML otherwise.  ElizaOS runtime keys Carrier has no use for
  (``clients``, ``modelProvider``, ``settings``, ``plugins``, ``system``, ``templates``,
  ``id``, ...) are ignored with a logged warning.

Field mapping, Carrier <-> ElizaOS:

=================== ============================================================
Carrier             ElizaOS
=================== ============================================================
name                name
nicknames           ``nicknames`` (a Carrier extension ElizaOS ignores); read from
                    ``username`` when a file has no ``nicknames`` and the
                    username differs from the name; written also as ``username``
                    (the first nickname)
traits              adjectives
lore                lore (a string or a list)
facts               knowledge: its strings; file and directory references
                    (``{"path": ...}``, ``{"directory": ...}``) are skipped with
                    a warning
bio                 bio (a string or a list)
topics              topics
style.all/chat/post style.all/chat/post
message_examples    messageExamples: ``[[{"user": ..., "content": {"text": ...}}]]``;
                    the speaker is read from ``user`` or, as in ElizaOS 1.x,
                    ``name``, and written to both; action-only messages (empty
                    text) are skipped
post_examples       postExamples
=================== ============================================================

Every Carrier field survives both formats, so ``load_character(dump_character(c, p))``
equals ``c`` for ``.yaml`` and ``.json`` alike.  ElizaOS-only keys are not written back:
add ``clients``, ``modelProvider`` and ``plugins`` before loading an exported file in ElizaOS.

Texts are stripped of surrounding whitespace and must not be empty.  Every problem raises
:class:`CharacterError` with a message naming the file, the field path and what was expected,
e.g. ``characters/x.yaml: traits.2: expected a string, got 5``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CharacterFormat = Literal["carrier", "eliza"]


class CharacterError(Exception):
    """A character file cannot be used; the message names the file, the field and the fix.

    ``problems`` holds one line per problem (without the file name).
    """

    def __init__(self, source: str, problems: list[str] | str) -> None:
        self.source = source
        self.problems = tuple([problems] if isinstance(problems, str) else problems)
        super().__init__("\n".join(f"{source}: {problem}" for problem in self.problems))


# --- the model --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StyleGuide(_Strict):
    """How the character writes: everywhere, in chat replies, in posts."""

    all: list[Text] = Field(default_factory=list)
    chat: list[Text] = Field(default_factory=list)
    post: list[Text] = Field(default_factory=list)


class ExampleMessage(_Strict):
    """One line of an example conversation.

    ``user`` is the speaker: the character's own name (or a nickname) for its lines, and a
    placeholder such as ``{{user1}}`` for the people it talks to.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: Text
    text: Text


Conversation = Annotated[list[ExampleMessage], Field(min_length=1)]


class Character(_Strict):
    """A persona as written in a character file."""

    name: Name
    nicknames: list[Text] = Field(default_factory=list)
    bio: list[Text] = Field(default_factory=list)
    traits: list[Text] = Field(default_factory=list)
    lore: list[Text] = Field(default_factory=list)
    facts: list[Text] = Field(default_factory=list)
    topics: list[Text] = Field(default_factory=list)
    style: StyleGuide = Field(default_factory=StyleGuide)
    message_examples: list[Conversation] = Field(default_factory=list)
    post_examples: list[Text] = Field(default_factory=list)


CARRIER_KEYS = frozenset(Character.model_fields)
_CARRIER_ONLY = frozenset({"traits", "facts", "message_examples", "post_examples"})


# --- ElizaOS input ----------------------------------------------------------------------------

_ELIZA_USED = frozenset(
    {
        "name",
        "username",
        "nicknames",
        "bio",
        "lore",
        "adjectives",
        "knowledge",
        "topics",
        "style",
        "messageExamples",
        "postExamples",
    }
)
_ELIZA_RUNTIME = frozenset(
    {
        "id",
        "system",
        "modelProvider",
        "imageModelProvider",
        "imageVisionModelProvider",
        "modelEndpointOverride",
        "clients",
        "clientConfig",
        "plugins",
        "settings",
        "secrets",
        "templates",
        "people",
        "twitterProfile",
        "nft",
        "extends",
    }
)
_ELIZA_MARKERS = (_ELIZA_USED | _ELIZA_RUNTIME) - CARRIER_KEYS


def _one_or_many(value: Any) -> Any:
    # ElizaOS accepts a single string wherever a list of strings fits (bio, lore, ...).
    return [value] if isinstance(value, str) else value


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _ElizaStyle(_Lenient):
    all: list[Text] = Field(default_factory=list)
    chat: list[Text] = Field(default_factory=list)
    post: list[Text] = Field(default_factory=list)

    @field_validator("all", "chat", "post", mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Any:
        return _one_or_many(value)


class _ElizaContent(_Lenient):
    text: Text


class _ElizaMessage(_Lenient):
    user: Text
    content: _ElizaContent

    @model_validator(mode="before")
    @classmethod
    def _speaker_from_name(cls, data: Any) -> Any:
        # ElizaOS 1.x names the speaker "name"; 0.x calls it "user".
        if isinstance(data, dict) and "user" not in data and "name" in data:
            return {**data, "user": data["name"]}
        return data


class _ElizaCharacter(_Lenient):
    name: Name
    username: str = ""
    nicknames: list[Text] = Field(default_factory=list)
    bio: list[Text] = Field(default_factory=list)
    lore: list[Text] = Field(default_factory=list)
    adjectives: list[Text] = Field(default_factory=list)
    knowledge: list[Text] = Field(default_factory=list)
    topics: list[Text] = Field(default_factory=list)
    style: _ElizaStyle = Field(default_factory=_ElizaStyle)
    message_examples: list[list[_ElizaMessage]] = Field(
        default_factory=list, alias="messageExamples"
    )
    post_examples: list[Text] = Field(default_factory=list, alias="postExamples")

    @field_validator("bio", "lore", "adjectives", "topics", "post_examples", mode="before")
    @classmethod
    def _wrap(cls, value: Any) -> Any:
        return _one_or_many(value)

    @field_validator("username", mode="before")
    @classmethod
    def _no_username(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("knowledge", mode="before")
    @classmethod
    def _string_knowledge(cls, value: Any, info: ValidationInfo) -> Any:
        value = _one_or_many(value)
        if not isinstance(value, list):
            return value
        references = [item for item in value if isinstance(item, dict)]
        if references:
            log.warning(
                "%s: skipping %d knowledge file/directory reference(s); Carrier imports only "
                "knowledge written as text",
                _source(info),
                len(references),
            )
        return [item for item in value if not isinstance(item, dict)]

    @field_validator("message_examples", mode="before")
    @classmethod
    def _drop_action_only(cls, value: Any, info: ValidationInfo) -> Any:
        # ElizaOS examples may show the agent answering with an action and no text.
        if not isinstance(value, list):
            return value
        kept: list[Any] = []
        dropped = 0
        for conversation in value:
            if isinstance(conversation, list):
                lines = [line for line in conversation if not _action_only(line)]
                dropped += len(conversation) - len(lines)
                if conversation and not lines:
                    continue
                conversation = lines
            kept.append(conversation)
        if dropped:
            log.warning(
                "%s: skipping %d action-only example message(s) with no text",
                _source(info),
                dropped,
            )
        return kept

    def to_character(self) -> Character:
        nicknames = list(self.nicknames)
        if not nicknames and self.username.strip():
            username = self.username.strip()
            if username.casefold() != self.name.casefold():
                nicknames = [username]
        return Character(
            name=self.name,
            nicknames=nicknames,
            bio=self.bio,
            traits=self.adjectives,
            lore=self.lore,
            facts=self.knowledge,
            topics=self.topics,
            style=StyleGuide(all=self.style.all, chat=self.style.chat, post=self.style.post),
            message_examples=[
                [ExampleMessage(user=line.user, text=line.content.text) for line in conversation]
                for conversation in self.message_examples
                if conversation
            ],
            post_examples=self.post_examples,
        )


def _source(info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, dict) else {}
    return str(context.get("source", "<character>"))


def _action_only(line: Any) -> bool:
    if not isinstance(line, dict) or not isinstance(line.get("content"), dict):
        return False
    content = line["content"]
    text = content.get("text", "")
    has_action = bool(content.get("action") or content.get("actions"))
    return has_action and isinstance(text, str) and not text.strip()


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedCharacter:
    """A character with where it came from: its format and the keys that were ignored."""

    character: Character
    format: CharacterFormat
    ignored_keys: tuple[str, ...] = ()


def load_character(path: Path | str) -> Character:
    """Read a Carrier YAML or ElizaOS JSON character file, or raise :class:`CharacterError`."""
    return read_character(path).character


def read_character(path: Path | str) -> LoadedCharacter:
    """Like :func:`load_character`, also telling the format and the ignored ElizaOS keys."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CharacterError(source, "no such file") from None
    except IsADirectoryError:
        raise CharacterError(source, "is a directory, not a character file") from None
    except PermissionError:
        raise CharacterError(source, "cannot be read: permission denied") from None
    except OSError as exc:
        raise CharacterError(source, f"cannot be read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CharacterError(
            source,
            f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8",
        ) from None
    return parse_character(text, source)


def parse_character(text: str, source: str = "<character>") -> LoadedCharacter:
    """Parse a character from the text of a file; ``source`` names it in error messages."""
    text = text.removeprefix("\ufeff")
    is_json = text.lstrip().startswith(("{", "["))
    data = _parse_json(text, source) if is_json else _parse_yaml(text, source)
    if data is None:
        raise CharacterError(source, "is empty; expected a mapping with at least a 'name'")
    if not isinstance(data, dict):
        raise CharacterError(
            source, f"expected a mapping of fields at the top level, got {_show(data)}"
        )
    keys = {str(key) for key in data}
    if not keys & _CARRIER_ONLY and (is_json or keys & _ELIZA_MARKERS):
        return _from_eliza(data, source)
    try:
        character = Character.model_validate(data)
    except ValidationError as exc:
        raise CharacterError(source, _problems(exc, yaml_source=not is_json)) from None
    return LoadedCharacter(character, "carrier")


def _from_eliza(data: dict[Any, Any], source: str) -> LoadedCharacter:
    ignored = tuple(sorted(str(key) for key in data if str(key) not in _ELIZA_USED))
    if ignored:
        log.warning(
            "%s: ignoring ElizaOS keys Carrier does not use: %s", source, ", ".join(ignored)
        )
    try:
        parsed = _ElizaCharacter.model_validate(data, context={"source": source})
    except ValidationError as exc:
        raise CharacterError(source, _problems(exc, yaml_source=False)) from None
    return LoadedCharacter(parsed.to_character(), "eliza", ignored)


def _parse_json(text: str, source: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise CharacterError(source, f"invalid JSON: the key {key!r} appears twice")
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise CharacterError(
            source, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


class _StrictYamlLoader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
    return mapping


_StrictYamlLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictYamlLoader)  # safe: a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "cannot be parsed"
        raise CharacterError(source, f"invalid YAML{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise CharacterError(source, f"invalid YAML: {exc}") from None


# --- error messages ---------------------------------------------------------------------------

_KEYS_AT = {
    "": sorted(CARRIER_KEYS),
    "style": sorted(StyleGuide.model_fields),
    "message_examples": sorted(ExampleMessage.model_fields),
}


def _problems(exc: ValidationError, *, yaml_source: bool) -> list[str]:
    return [_problem(error, yaml_source=yaml_source) for error in exc.errors()]


def _problem(error: Any, *, yaml_source: bool) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        parent = ".".join(str(part) for part in loc[:-1])
        allowed = _KEYS_AT.get(str(loc[0]) if len(loc) > 1 else "", [])
        where = f"{parent}: " if parent else ""
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{where}unknown key {str(loc[-1])!r}{hint}"
    path = ".".join(str(part) for part in loc) or "(top level)"
    if kind == "missing":
        if loc[-1] == "content":
            return f"{path}: missing; expected a mapping with a 'text' string"
        if loc[-1] == "user" and loc[0] == "messageExamples":
            return f"{path}: missing; expected the speaker in 'user' (or 'name')"
        return f"{path}: missing; expected a non-empty string"
    if kind == "string_type":
        hint = ""
        if yaml_source and (value is None or isinstance(value, bool | int | float)):
            hint = " (put it in quotes if you meant it as text)"
        return f"{path}: expected a string, got {_show(value)}{hint}"
    if kind == "string_too_short":
        return f"{path}: expected a non-empty string, got an empty one"
    if kind == "string_too_long":
        limit = (error.get("ctx") or {}).get("max_length")
        return f"{path}: expected at most {limit} characters, got {len(value)}"
    if kind == "list_type":
        return f"{path}: expected a list, got {_show(value)}"
    if kind == "too_short":
        return f"{path}: expected at least one item, got an empty list"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"{path}: expected a mapping, got {_show(value)}"
    return f"{path}: {error['msg']}"


def _show(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{type(value).__name__} {str(value)[:40]!r}"


# --- writing ----------------------------------------------------------------------------------


class _IndentedDumper(yaml.SafeDumper):  # type: ignore[misc,unused-ignore]
    """Indents list items under their key, the way people write YAML by hand."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


_UNUSUAL_BREAKS = frozenset("\r\x85\u2028\u2029")


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text reads best as a literal block; the rarer line breaks YAML knows would be
    # folded into spaces when unquoted, so those texts are double-quoted (and escaped).
    style: str | None = None
    if _UNUSUAL_BREAKS.intersection(value):
        style = '"'
    elif "\n" in value:
        style = "|"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_IndentedDumper.add_representer(str, _represent_text)


def character_to_yaml(character: Character) -> str:
    """The character as Carrier YAML text."""
    body: str = yaml.dump(
        character.model_dump(mode="json"),
        Dumper=_IndentedDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    # The header names no field value: a name could hold a line break or a control character.
    return "# Carrier character file; characters/fish.yaml is a commented example.\n" + body


def character_to_eliza(character: Character) -> dict[str, Any]:
    """The character as an ElizaOS character mapping (see the module docstring)."""
    data: dict[str, Any] = {"name": character.name}
    if character.nicknames:
        data["username"] = character.nicknames[0]
        data["nicknames"] = list(character.nicknames)
    data.update(
        {
            "bio": list(character.bio),
            "lore": list(character.lore),
            "adjectives": list(character.traits),
            "knowledge": list(character.facts),
            "topics": list(character.topics),
            "style": character.style.model_dump(),
            "messageExamples": [
                [
                    {"user": line.user, "name": line.user, "content": {"text": line.text}}
                    for line in conversation
                ]
                for conversation in character.message_examples
            ],
            "postExamples": list(character.post_examples),
        }
    )
    return data


def dump_character(character: Character, path: Path | str) -> None:
    """Write ``character`` to ``path``: Carrier YAML for ``.yaml``/``.yml``, ElizaOS JSON for
    ``.json``.  The file is replaced atomically, so a failed write leaves the old one intact."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = character_to_yaml(character)
    elif suffix == ".json":
        text = json.dumps(character_to_eliza(character), indent=2, ensure_ascii=False) + "\n"
    else:
        raise CharacterError(
            str(path), "unknown format; name the file .yaml or .yml (Carrier) or .json (ElizaOS)"
        )
    try:
        fd, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CharacterError(str(path), f"cannot be written: {exc.strerror or exc}") from None
