"""``carrier persona ...`` end to end on a real SQLite file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from carrier.cli.persona import app
from carrier.persona.character import load_character, parse_character

ROOT = Path(__file__).resolve().parents[2]
FISH = ROOT / "characters" / "fish.yaml"
ELIZA = ROOT / "characters" / "eliza-example.json"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f'database: {{url: "sqlite+aiosqlite:///{tmp_path / "x.db"}"}}\n')
    return path


def invoke(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, [*args, "--config", str(config)], input=input)


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def show_ids(config: Path) -> dict[str, int]:
    result = invoke(config, "show")
    assert result.exit_code == 0, result.output
    rows = re.findall(r"│\s*(\d+)\s*│\s*(\w+)\s*│\s*(.*?)\s*│", result.stdout)
    return {text: int(item_id) for item_id, _kind, text in rows}


def test_import_show_and_export_round_trip(config: Path, tmp_path: Path) -> None:
    imported = invoke(config, "import", str(FISH))
    assert imported.exit_code == 0, imported.output
    assert "Imported Finnegan into agent 'fish'" in flat(imported.stdout)
    assert "7 traits" in flat(imported.stdout) and "10 example conversations" in flat(
        imported.stdout
    )

    shown = invoke(config, "show", "--kind", "fact")
    assert shown.exit_code == 0, shown.output
    assert "Persona of Finnegan (agent fish)" in shown.stdout
    assert "five-star restaurant" in flat(shown.stdout)
    assert "suspicious of sharks" not in flat(shown.stdout)  # a trait, filtered out

    exported = tmp_path / "out.yaml"
    assert invoke(config, "export", str(exported)).exit_code == 0
    assert load_character(exported) == load_character(FISH)

    as_json = tmp_path / "out.json"
    assert invoke(config, "export", str(as_json)).exit_code == 0
    assert load_character(as_json) == load_character(FISH)
    assert json.loads(as_json.read_text())["adjectives"][:2] == ["curious", "cautious"]

    to_stdout = invoke(config, "export")
    assert to_stdout.exit_code == 0
    assert parse_character(to_stdout.stdout, "stdout").character == load_character(FISH)


def test_import_elizaos_reports_ignored_keys(config: Path) -> None:
    result = invoke(config, "import", str(ELIZA), "--yes")

    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "Imported Marlowe" in out and "from ElizaOS character" in out
    assert "Ignored ElizaOS keys Carrier does not use: clients, id, modelProvider" in out


def test_a_bad_file_exits_non_zero_and_keeps_the_stored_persona(
    config: Path, tmp_path: Path
) -> None:
    assert invoke(config, "import", str(FISH)).exit_code == 0
    before = show_ids(config)
    assert len(before) == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Broken\ntraits: [curious, 5]\n")

    result = invoke(config, "import", str(bad), "--yes")

    assert result.exit_code == 1
    assert f"error: {bad}: traits.1: expected a string, got 5" in flat(result.stderr)
    assert show_ids(config) == before
    assert "Persona of Finnegan" in invoke(config, "show").stdout


def test_missing_file_is_a_clear_error(config: Path, tmp_path: Path) -> None:
    result = invoke(config, "import", str(tmp_path / "nope.yaml"), "--yes")

    assert result.exit_code == 1
    assert "nope.yaml: no such file" in flat(result.stderr)


def test_replacing_a_persona_asks_first(config: Path) -> None:
    assert invoke(config, "import", str(FISH)).exit_code == 0

    declined = invoke(config, "import", str(ELIZA), input="n\n")
    assert declined.exit_code != 0
    assert "Replace the persona of agent 'fish' (Finnegan, 64 items)" in flat(declined.stdout)
    assert "Persona of Finnegan" in invoke(config, "show").stdout

    accepted = invoke(config, "import", str(ELIZA), input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "Persona of Marlowe" in invoke(config, "show").stdout


def test_add_edit_and_remove_items_live(config: Path) -> None:
    assert invoke(config, "import", str(FISH)).exit_code == 0

    added = invoke(config, "add", "trait", "fond of puddles")
    assert added.exit_code == 0, added.output
    item_id = show_ids(config)["fond of puddles"]
    assert f"Added trait #{item_id}: fond of puddles" in flat(added.stdout)

    edited = invoke(config, "edit", str(item_id), "very fond of puddles")
    assert edited.exit_code == 0, edited.output
    assert show_ids(config)["very fond of puddles"] == item_id

    removed = invoke(config, "remove", str(item_id))
    assert removed.exit_code == 0
    assert f"Removed persona item #{item_id}" in removed.stdout
    assert "very fond of puddles" not in show_ids(config)

    again = invoke(config, "remove", str(item_id))
    assert again.exit_code == 1
    assert f"agent 'fish' has no persona item #{item_id}" in flat(again.stderr)


def test_add_rejects_unknown_kinds_and_bad_examples(config: Path) -> None:
    assert invoke(config, "import", str(FISH)).exit_code == 0
    before = show_ids(config)
    assert len(before) == 64

    unknown = invoke(config, "add", "quirk", "x")
    assert unknown.exit_code == 1
    assert "unknown kind 'quirk'; expected one of: nickname, trait" in flat(unknown.stderr)

    broken = invoke(config, "add", "example", '[{"user": "a"}]')
    assert broken.exit_code == 1
    assert "an example must be a JSON list" in flat(broken.stderr)
    assert show_ids(config) == before


def test_commands_on_an_empty_database_say_what_to_do(config: Path, tmp_path: Path) -> None:
    shown = invoke(config, "show")
    assert shown.exit_code == 0
    assert "no persona stored for agent 'fish' yet" in flat(shown.stdout)
    assert "carrier persona import characters/fish.yaml" in flat(shown.stdout)

    added = invoke(config, "add", "trait", "curious")
    assert added.exit_code == 1
    assert "no persona stored for agent 'fish' yet" in flat(added.stderr)

    exported = invoke(config, "export", str(tmp_path / "out.yaml"))
    assert exported.exit_code == 1
    assert not (tmp_path / "out.yaml").exists()


def test_export_does_not_overwrite_without_force(config: Path, tmp_path: Path) -> None:
    assert invoke(config, "import", str(FISH)).exit_code == 0
    target = tmp_path / "mine.yaml"
    target.write_text("# my hand-written notes\n")

    refused = invoke(config, "export", str(target))
    assert refused.exit_code == 1
    assert "already exists; pass --force" in flat(refused.stderr)
    assert target.read_text() == "# my hand-written notes\n"

    forced = invoke(config, "export", str(target), "--force")
    assert forced.exit_code == 0
    assert load_character(target).name == "Finnegan"
