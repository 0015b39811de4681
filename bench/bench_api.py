"""The HTTP API under load, from a separate process, with the scripted zero-latency LLM.

    python bench/bench_api.py                 # 30 s of REST load, 60 s of 1,000 WebSockets
    python bench/bench_api.py --seconds 10 --ws-seconds 15    # a quicker run

Three processes: the scripted LLM server (``python -m carrier.testing.llm_server``), the API
(``carrier serve``, exactly as an operator runs it, long-term memory off), and this one, the
load generator.

Targets (issue 6):
- the chat endpoint sustains at least 300 requests/s with p99 at most 100 ms at 100
  concurrent connections;
- 1,000 WebSocket clients stay connected and chatting for a minute without an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from carrier.bootstrap import prepare_store
from carrier.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), to show the server's cost per
    request apart from the noise of a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Processes:
    """The LLM server and the API server, each in a process of its own."""

    def __init__(self, workdir: Path, *, llm: bool = True) -> None:
        self.llm = subprocess.Popen(
            [sys.executable, "-m", "carrier.testing.llm_server", "--answer", "Blub, fine water."],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.llm.stdout is not None
        llm_url = self.llm.stdout.readline().strip()
        self.port = free_port()
        self.config = workdir / "config.yaml"
        self.config.write_text(
            f"database:\n  url: sqlite+aiosqlite:///{workdir / 'bench.db'}\n"
            f"agent:\n  id: fish\n  character_file: {ROOT / 'characters/fish.yaml'}\n"
            "rate_limits:\n  per_user: 10000000/minute\n  global: 100000000/minute\n"
            "logging:\n  level: WARNING\n"
            + (
                "llm:\n  providers:\n"
                f"    - kind: openai\n      model: bench\n      base_url: {llm_url}/v1\n"
                "      api_key_env: null\n"
                if llm
                else ""
            )
            + f"api:\n  port: {self.port}\n",
            encoding="utf-8",
        )
        self.api: subprocess.Popen[bytes] | None = None

    def start_api(self, profile: str | None = None) -> str:
        python = [sys.executable] + (["-m", "cProfile", "-o", profile] if profile else [])
        self.api = subprocess.Popen(
            [*python, "-m", "carrier.cli.main", "serve", "-c", str(self.config), "--no-memory"],
            cwd=self.config.parent,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        errors = ""
        if self.api is not None:
            self.api.send_signal(signal.SIGTERM)
            _, err = self.api.communicate(timeout=60)
            errors = err.decode(errors="replace").strip()
        self.llm.terminate()
        self.llm.communicate(timeout=30)
        return errors


async def create_key(config: Path) -> str:
    settings = load_settings(config)
    store = await prepare_store(settings)
    try:
        created = await store.api_keys.create("fish", "bench", ["chat", "admin"])
    finally:
        await store.close()
    return created.secret


async def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API did not become ready")


# -- REST -------------------------------------------------------------------------------------


@dataclass
class RestResult:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    non_replies: int = 0


async def rest_load(
    url: str,
    key: str,
    seconds: float,
    concurrency: int,
    server_pid: int,
    *,
    path: str | None = None,
) -> tuple[RestResult, float, float]:
    """POSTs chat messages (or GETs ``path``) from ``concurrency`` connections; returns the
    result, the measured wall time and the server's CPU seconds in it."""
    result = RestResult()
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    stop_at = 0.0

    async def worker(n: int, session: aiohttp.ClientSession, record: bool) -> None:
        channel = f"rest-{n % 20}"
        i = 0
        while time.monotonic() < stop_at:
            body = {"author_id": f"user-{n}", "text": f"@fish how is the water, {i}?"}
            began = time.perf_counter()
            try:
                request = (
                    session.get(url + path)
                    if path
                    else session.post(
                        f"{url}/api/v1/agents/fish/channels/{channel}/messages", json=body
                    )
                )
                async with request as response:
                    data = await response.json() if path is None else {"reply": True}
                    ok = response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok, data = False, None
            elapsed = (time.perf_counter() - began) * 1000
            if record:
                if not ok:
                    result.errors += 1
                else:
                    result.latencies.append(elapsed)
                    if data.get("reply") is None:
                        result.non_replies += 1
            i += 1

    async with aiohttp.ClientSession(
        headers=headers, connector=connector, timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        stop_at = time.monotonic() + 3  # warm up: connections, caches
        await asyncio.gather(*(worker(n, session, False) for n in range(concurrency)))
        began = time.monotonic()
        cpu_before = cpu_seconds(server_pid)
        stop_at = began + seconds
        await asyncio.gather(*(worker(n, session, True) for n in range(concurrency)))
        wall = time.monotonic() - began
        cpu = cpu_seconds(server_pid) - cpu_before
    return result, wall, cpu


# -- WebSockets -------------------------------------------------------------------------------


@dataclass
class WsResult:
    connected: int = 0
    sent: int = 0
    outcomes: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def ws_load(
    url: str, key: str, clients: int, seconds: float, interval: float, per_channel: int
) -> WsResult:
    result = WsResult()
    ws_url = url.replace("http://", "ws://")
    all_connected = asyncio.Event()
    stop_at = 0.0

    async def client(n: int, session: aiohttp.ClientSession) -> None:
        channel = f"ws-{n // per_channel}"
        rng = random.Random(n)
        try:
            async with session.ws_connect(
                f"{ws_url}/api/v1/agents/fish/channels/{channel}/ws", heartbeat=None
            ) as socket_:
                await socket_.send_json({"type": "auth", "key": key})
                ready = await socket_.receive_json(timeout=30)
                if ready.get("type") != "ready":
                    result.errors.append(f"client {n}: {ready}")
                    return
                result.connected += 1
                if result.connected == clients:
                    all_connected.set()
                await all_connected.wait()
                i = 0
                await asyncio.sleep(rng.uniform(0, interval))
                while time.monotonic() < stop_at:
                    request_id = f"{n}-{i}"
                    await socket_.send_json(
                        {
                            "type": "message",
                            "request_id": request_id,
                            "author_id": f"ws-user-{n}",
                            "text": f"@fish ripple {i}",
                        }
                    )
                    result.sent += 1
                    began = time.perf_counter()
                    while True:  # others' messages and replies arrive in between
                        message = await socket_.receive(timeout=30)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            result.errors.append(f"client {n}: {message.type.name} {message.data}")
                            return
                        event = message.json()
                        if event["type"] == "error":
                            result.errors.append(f"client {n}: {event['error']}")
                        if event["type"] == "outcome" and event["request_id"] == request_id:
                            result.outcomes += 1
                            result.latencies.append((time.perf_counter() - began) * 1000)
                            break
                    i += 1
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * interval)
                if socket_.closed:
                    result.errors.append(f"client {n}: closed {socket_.close_code}")
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            result.errors.append(f"client {n}: {type(exc).__name__} {exc}")

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        for n in range(clients):
            tasks.append(asyncio.create_task(client(n, session)))
            if n % 50 == 49:
                await asyncio.sleep(0.05)  # connect in waves, not one SYN flood
        try:
            await asyncio.wait_for(all_connected.wait(), 120)
        except TimeoutError:
            result.errors.append(f"only {result.connected} of {clients} connected")
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*tasks)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="REST load duration")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--ws-clients", type=int, default=1000)
    parser.add_argument("--ws-seconds", type=float, default=60.0)
    parser.add_argument("--ws-interval", type=float, default=60.0, help="mean s between messages")
    parser.add_argument("--ws-per-channel", type=int, default=10, help="clients per channel")
    parser.add_argument("--profile", help="write the API process's cProfile stats here")
    parser.add_argument("--rest-only", action="store_true")
    parser.add_argument("--ws-only", action="store_true")
    parser.add_argument(
        "--markov", action="store_true", help="no LLM: replies from the Markov fallback"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        processes = Processes(Path(tmp), llm=not args.markov)
        try:
            key = await create_key(processes.config)
            url = processes.start_api(args.profile)
            await wait_ready(url)
            assert processes.api is not None
            for probe in () if args.ws_only else ("/healthz", "/api/v1/agents/fish"):
                alone, probe_wall, probe_cpu = await rest_load(
                    url, key, 5, args.concurrency, processes.api.pid, path=probe
                )
                print(
                    f"GET {probe} (the HTTP layer alone), {args.concurrency} connections: "
                    f"{len(alone.latencies) / probe_wall:.0f} requests/s, p99 "
                    f"{pct(alone.latencies, 0.99):.1f} ms, {alone.errors} errors, server CPU "
                    f"{probe_cpu * 1000 / max(1, len(alone.latencies)):.2f} ms per request",
                    flush=True,
                )
            if not args.ws_only:
                rest, wall, cpu = await rest_load(
                    url, key, args.seconds, args.concurrency, processes.api.pid
                )
                lat = rest.latencies
                print(
                    f"REST chat, {args.concurrency} concurrent connections, {wall:.0f} s: "
                    f"{len(lat) / wall:.0f} requests/s, p50 {statistics.median(lat):.1f} ms, "
                    f"p95 {pct(lat, 0.95):.1f} ms, p99 {pct(lat, 0.99):.1f} ms, "
                    f"{rest.errors} errors, {rest.non_replies} without a reply; server CPU "
                    f"{cpu * 1000 / max(1, len(lat) + rest.errors):.1f} ms per request, "
                    f"{cpu / wall:.0%} of a core "
                    f"(target >= 300 requests/s, p99 <= 100 ms)",
                    flush=True,
                )
            if args.rest_only:
                return
            ws = await ws_load(
                url, key, args.ws_clients, args.ws_seconds, args.ws_interval, args.ws_per_channel
            )
            wlat = ws.latencies or [0.0]
            print(
                f"WebSocket: {ws.connected}/{args.ws_clients} clients connected, chatting "
                f"{args.ws_seconds:.0f} s ({args.ws_per_channel} per channel, a message every "
                f"~{args.ws_interval:g} s each): {ws.sent} messages, {ws.outcomes} outcomes, "
                f"{len(ws.errors)} errors; outcome p50 {statistics.median(wlat):.1f} ms, "
                f"p99 {pct(wlat, 0.99):.1f} ms (target: all connected, 0 errors)",
                flush=True,
            )
            for error in ws.errors[:5]:
                print("  ws error:", error)
        finally:
            server_errors = processes.stop()
        if server_errors:
            print("server stderr (last lines):")
            for line in server_errors.splitlines()[-5:]:
                print("  " + line)


if __name__ == "__main__":
    if sys.platform != "win32":
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main())
