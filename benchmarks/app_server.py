"""Launch the real app (and the latency floor app) in a subprocess on a free port, for latency, cold-start
and memory figures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB (from /proc)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


@contextmanager
def launched(argv: list[str], probe, env: dict | None = None, timeout: float = 120.0):
    """Start ``argv`` (a Gradio server) on a free port; yield (url, process, seconds until ``probe(url)``
    first succeeds)."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
                "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    ready = None
    try:
        while time.perf_counter() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(argv[1:])} exited with {proc.returncode}")
            try:
                probe(url)
                ready = time.perf_counter() - start
                break
            except Exception:
                time.sleep(0.1)
        if ready is None:
            raise RuntimeError(f"{' '.join(argv[1:])} did not answer in time")
        yield url, proc, ready
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _health(url: str) -> None:
    from gradio_client import Client

    Client(url, verbose=False).predict(api_name="/health")


def _api(url: str) -> None:
    from gradio_client import Client

    Client(url, verbose=False)


@contextmanager
def launched_app(env: dict | None = None, timeout: float = 120.0):
    """The real app: yield (url, process, seconds to the first successful /health)."""
    with launched([sys.executable, "app.py"], _health, env, timeout) as started:
        yield started


@contextmanager
def launched_floor(timeout: float = 120.0):
    """The latency floor (benchmarks/floor_app.py): yield (url, process, seconds until it answers)."""
    with launched([sys.executable, "-m", "benchmarks.floor_app"], _api, None, timeout) as started:
        yield started
