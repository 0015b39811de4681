"""``carrier serve --workers N``: N API processes on one port.

Each worker is an ordinary ``carrier serve`` process that listens with SO_REUSEPORT, so the
kernel spreads new connections over them; this module checks that the deployment can be split
that way, reserves the port, starts the workers and stops them together.

Several processes are only correct when what one process would keep to itself is shared:

- rate limits live in memory without Redis: each worker would allow the full rate;
- a WebSocket listener hears only its own worker's broadcasts unless they travel through
  Redis (:mod:`carrier.clients.http.relay`).

So more than one worker needs ``redis_url``.  The database is shared as it is between any two
processes: with SQLite the workers' writers take turns on the one file (WAL; a writer waits up
to the busy timeout), with PostgreSQL they write side by side.  Each worker has its own
``/metrics``.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from carrier.clients.http.server import reuse_port_socket
from carrier.settings import Settings


def workers_problem(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes would serve the agent incorrectly, or None."""
    if workers > 1 and settings.redis_url is None:
        return (
            f"--workers {workers} needs redis_url: without Redis each worker would keep its "
            "own rate limits and its WebSocket listeners would miss what is said on the other "
            "workers. Set REDIS_URL, or serve with one worker."
        )
    return None


def reserve_port(host: str, port: int) -> socket.socket:
    """The port for the workers, held (bound, not listening) until they exit: it stays ours,
    and port 0 becomes one concrete port that every worker binds."""
    return reuse_port_socket(host, port)


def run_workers(worker_command: Sequence[str], workers: int, reserved: socket.socket) -> int:
    """Start ``workers`` copies of ``worker_command`` (a ``carrier serve ... --reuse-port``;
    ``{port}`` in it is replaced by the port ``reserved`` holds) and wait for them; closes
    ``reserved`` at the end.  SIGINT/SIGTERM stop them all gracefully; when one exits on its
    own the others are stopped too.  Returns the exit status for the command."""
    chosen = reserved.getsockname()[1]
    command = [part.replace("{port}", str(chosen)) for part in worker_command]
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        # A session of their own: a Ctrl+C in the terminal reaches them once, through stop().
        children.extend(subprocess.Popen(command, start_new_session=True) for _ in range(workers))
        while any(child.poll() is None for child in children):
            for child in children:
                code = child.poll()
                if code is not None and not stopping:
                    print(
                        f"a worker exited with status {code}; stopping the others",
                        file=sys.stderr,
                    )
                    status = code or 1
                    stop()
            time.sleep(0.1)
        if not status:
            status = max((child.returncode for child in children), default=0)
    finally:
        stop()
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserved.close()
    return status
