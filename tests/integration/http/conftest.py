"""Fixtures of the HTTP tests (see api_support)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from api_support import RunningApi, make_settings, running_api

from carrier.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[RunningApi]:
    async with running_api(settings) as running:
        yield running
