"""The README's configuration examples are valid configuration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carrier.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def yaml_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)


def test_readme_has_yaml_examples() -> None:
    assert yaml_blocks()


@pytest.mark.parametrize("block", yaml_blocks())
def test_each_yaml_example_loads(
    block: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-readme")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-readme")
    config = tmp_path / "config.yaml"
    config.write_text(block, encoding="utf-8")
    settings = load_settings(config)
    # every provider written in the example is configured (none silently dropped)
    assert len(settings.llm.providers) == block.count("- kind:")
    if "mode:" in block:
        assert settings.llm.mode is not None and f"mode: {settings.llm.mode}" in block
