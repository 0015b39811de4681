"""bench/bench_api.py judges its figures against issue 6's targets: any miss is a FAIL and a
non-zero exit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_api.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_api", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_api"] = module  # dataclasses look their module up
    sys.path.insert(0, str(BENCH.parent))  # as when run: its helpers sit beside it
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["bench_api"]
        sys.path.remove(str(BENCH.parent))
    return module


def _failed(verdicts: list[object]) -> list[str]:
    return [v.target for v in verdicts if not v.ok]  # type: ignore[attr-defined]


def test_rest_targets(bench: ModuleType) -> None:
    assert _failed(bench.rest_verdicts(300.0, 100.0, 0, 100)) == []
    # The open loop offers 300/s; answering within 1% of it passes, less does not.
    assert _failed(bench.rest_verdicts(297.5, 20.0, 0, 100)) == []
    assert len(_failed(bench.rest_verdicts(296.0, 20.0, 0, 100))) == 1
    assert "300 requests/s" in _failed(bench.rest_verdicts(296.0, 20.0, 0, 100))[0]
    # Offering less than 300/s cannot pass, however well it is answered.
    assert len(_failed(bench.rest_verdicts(200.0, 20.0, 0, 100, offered=200.0))) == 1
    assert _failed(bench.rest_verdicts(400.0, 20.0, 0, 100, offered=400.0)) == []
    assert len(_failed(bench.rest_verdicts(900.0, 100.5, 0, 100))) == 1
    assert _failed(bench.rest_verdicts(900.0, 20.0, 1, 100)) == ["REST chat without errors"]
    # p99 only counts at 100 concurrent connections or more.
    assert len(_failed(bench.rest_verdicts(900.0, 20.0, 0, 10))) == 1


def _ws(bench: ModuleType, clients: int, **changes: object) -> object:
    result = bench.WsResult(
        connected=clients,
        still_connected=clients,
        sent_by=[12] * clients,
        received_by=[250] * clients,
        outcomes_by=[12] * clients,
    )
    for name, value in changes.items():
        setattr(result, name, value)
    return result


def test_websocket_targets(bench: ModuleType) -> None:
    assert _failed(bench.ws_verdicts(_ws(bench, 1000), 1000)) == []
    assert len(_failed(bench.ws_verdicts(_ws(bench, 999), 999))) == 1  # fewer than 1,000
    dropped = _ws(bench, 1000, still_connected=998)
    assert len(_failed(bench.ws_verdicts(dropped, 1000))) == 1
    errors = _ws(bench, 1000, errors=["client 3: closed by the server (1011)"])
    assert _failed(bench.ws_verdicts(errors, 1000)) == ["WebSocket without errors"]
    silent = _ws(bench, 1000, sent_by=[0] + [12] * 999, outcomes_by=[0] + [12] * 999)
    assert _failed(bench.ws_verdicts(silent, 1000)) == ["WebSocket clients all chatting"]
    unanswered = _ws(bench, 1000, outcomes_by=[11] + [12] * 999)
    assert _failed(bench.ws_verdicts(unanswered, 1000)) == ["WebSocket clients all chatting"]
    # 12,000 sent: keeping pace with 15,000 offered (80%), not with 17,000 (71%).
    assert _failed(bench.ws_verdicts(_ws(bench, 1000), 1000, offered=15_000)) == []
    slow = bench.ws_verdicts(_ws(bench, 1000), 1000, offered=17_000)
    assert len(_failed(slow)) == 1 and "pace" in _failed(slow)[0]


def test_server_errors_in_its_log_count(bench: ModuleType) -> None:
    log = "WARNING carrier.x: slow\nERROR carrier.http: database unavailable\nTraceback (most"
    assert len(bench.server_problems(log)) == 2
    assert bench.server_problems("WARNING carrier.webhooks: retry") == []
