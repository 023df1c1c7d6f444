"""Abuse, as a hostile visitor would try it, against the launched app on loopback (bounded in count and time).

Each case asserts what a user would notice: the server keeps answering /health, refuses with a sentence,
and cleans up after itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import httpx
import pytest

from vaedemo.ui.guard import JSON_LIMIT, TempSweeper, share_the_queue

pytestmark = pytest.mark.usefixtures("app_env")
FIGURES = Path(__file__).resolve().parents[1] / "test-artifacts" / "abuse.json"


def _record(case: str, **figures) -> None:
    """Keep each case's figures (requests, worst latency, memory) for SECURITY.md."""
    FIGURES.parent.mkdir(exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.is_file() else {}
    data[case] = figures
    FIGURES.write_text(json.dumps(data, indent=2))


def _health_latency(app_url: str, stop: threading.Event, worst: list[float]) -> None:
    with httpx.Client(base_url=app_url, timeout=30) as http:
        while not stop.is_set():
            start = time.perf_counter()
            assert http.get("config").status_code == 200
            worst[0] = max(worst[0], time.perf_counter() - start)
            time.sleep(0.05)


def test_large_bodies_are_refused_before_parsing_while_the_app_keeps_answering(app_url):
    stop, worst = threading.Event(), [0.0]
    watcher = threading.Thread(target=_health_latency, args=(app_url, stop, worst))
    watcher.start()
    try:
        with httpx.Client(base_url=app_url, timeout=60) as http:
            big = b'{"data": [' + b"1.0," * (3 * 1024 * 1024) + b'1.0], "fn_index": 0, "session_hash": "x"}'
            r = http.post("gradio_api/queue/join", content=big, headers={"content-type": "application/json"})
            assert r.status_code == 413 and "larger than this server accepts" in r.json()["detail"]

            def chunks():  # no Content-Length: the limit is found while reading
                for _ in range(40):
                    yield b"[" + b"9" * (256 * 1024) + b"]"

            r = http.post("gradio_api/queue/join", content=chunks(), headers={"content-type": "application/json"})
            assert r.status_code == 413
            r = http.post("gradio_api/upload", files={"files": ("big.png", b"\x89PNG" + b"0" * (12 * 2**20))})
            assert r.status_code == 413  # uploads keep their own, larger cap
            small = http.post("gradio_api/queue/join", json={"data": [], "fn_index": 0, "session_hash": "y"})
            assert small.status_code != 413  # an honest body still goes through
    finally:
        stop.set()
        watcher.join()
    _record("large bodies", requests=4, worst_page_latency_s=round(worst[0], 3))
    assert worst[0] < 5.0, f"the app stalled for {worst[0]:.1f} s while refusing large bodies"
    assert JSON_LIMIT <= 2 * 1024 * 1024


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _declare_and_send(app_url: str, declared: int, sent: int) -> bytes:
    url = urlparse(app_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as s:
        s.sendall(
            (
                f"POST /gradio_api/queue/join HTTP/1.1\r\nHost: {url.hostname}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
            ).encode()
        )
        try:
            s.sendall(b"[" + b"1.0," * (sent // 4))
        except OSError:
            pass  # the server refused and hung up: that is the point
        s.settimeout(10)
        try:
            return s.recv(4096)
        except OSError:
            return b""


def test_memory_stays_put_under_fifty_megabyte_bodies(app_url):
    """Issue: three 50 MB bodies each raised resident memory by ~500 MB for good. The server runs in this
    test process, so its resident memory is this process's."""
    import gc

    gc.collect()
    before = _rss_mb()
    answers = [_declare_and_send(app_url, 50 * 2**20, 4 * 2**20) for _ in range(8)]
    gc.collect()
    after = _rss_mb()
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers), answers[0][:200]
    _record("50 MB bodies", requests=len(answers), rss_before_mb=round(before), rss_after_mb=round(after))
    assert after <= before * 1.2, f"resident memory {before:.0f} MB → {after:.0f} MB"


def test_the_run_routes_that_skip_the_queue_are_off(app_url):
    with httpx.Client(base_url=app_url, timeout=30) as http:
        r = http.post("gradio_api/run/sample", json={"data": ["tiny-vae", 4, 1.0, 0, "any"]})
        assert r.status_code in (403, 404) and "queue" in r.text.lower()


def _cut_off_upload(app_url: str, sent: int = 2 * 2**20) -> None:
    """Start a multipart upload that declares 8 MB, send ``sent`` bytes of it, and hang up."""
    url = urlparse(app_url)
    boundary = "vaedemoboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="cut.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(
            (
                f"POST /gradio_api/upload HTTP/1.1\r\nHost: {url.hostname}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {8 * 2**20}\r\n\r\n"
            ).encode()
            + head
        )
        s.sendall(b"\x89PNG" + b"0" * sent)
        time.sleep(0.5)  # let the server write what it got


def test_cut_off_uploads_are_swept(app_url):
    temp = Path(os.environ["GRADIO_TEMP_DIR"])
    before = {p for p in temp.iterdir() if p.is_file()}
    for _ in range(3):
        _cut_off_upload(app_url)
    time.sleep(1.0)
    left = {p for p in temp.iterdir() if p.is_file()} - before
    assert left, "a cut-off upload left no partial file: nothing to sweep (did Gradio change?)"
    size = sum(p.stat().st_size for p in left)
    assert size > 1 * 2**20
    outside = temp.parent / "not-ours.txt"
    outside.write_text("a file the sweep must never touch")
    link = temp / "a-link"
    link.symlink_to(outside)
    os.utime(link, (0, 0), follow_symlinks=False)
    sweeper = TempSweeper(lambda: [temp], age_s=600)
    assert sweeper.sweep() == 0  # fresh files stay: an upload may still be arriving
    assert sweeper.sweep(now=time.time() + 3600) >= len(left)
    _record(
        "cut-off uploads",
        requests=3,
        left_behind_mb=round(size / 2**20, 1),
        left_after_sweep=len({p for p in temp.iterdir() if p.is_file()} - before - {link}),
    )
    assert not ({p for p in temp.iterdir() if p.is_file()} - before - {link})
    assert outside.read_text().startswith("a file") and link.is_symlink()  # a symlink is never followed
    link.unlink()
    outside.unlink()


def test_one_client_cannot_fill_the_shared_queue():
    """share_the_queue counts the events each session and each address holds and refuses the extra ones."""
    pushed = []

    async def original(body, request, username):
        event = SimpleNamespace(session_hash=body.session_hash, request=request)
        queue.event_ids_to_events[str(len(pushed))] = event
        pushed.append(event)
        return True, str(len(pushed)), "success"

    queue = SimpleNamespace(event_ids_to_events={}, push=original)
    share_the_queue(queue, per_session=4, per_address=6)

    def request(host, forwarded=None):
        return SimpleNamespace(
            client=SimpleNamespace(host=host), headers={"x-forwarded-for": forwarded} if forwarded else {}
        )

    async def run():
        greedy = [await queue.push(SimpleNamespace(session_hash="greedy"), request("10.0.0.9"), None) for _ in range(6)]
        other = await queue.push(SimpleNamespace(session_hash="polite"), request("10.0.0.7"), None)
        mint = [
            await queue.push(SimpleNamespace(session_hash=f"mint-{i}"), request("10.0.0.9"), None) for i in range(4)
        ]
        proxied = await queue.push(SimpleNamespace(session_hash="behind"), request("10.0.0.9", "203.0.113.5"), None)
        return greedy, other, mint, proxied

    greedy, other, mint, proxied = asyncio.run(run())
    assert [ok for ok, _, _ in greedy] == [True] * 4 + [False] * 2
    assert "wait until one of them finishes" in greedy[-1][1] and greedy[-1][2] == "queue_full"
    assert other[0]  # another visitor is not made to wait for the greedy one
    assert [ok for ok, _, _ in mint] == [True, True, False, False]  # new session names do not lift the address cap
    assert proxied[0]  # behind a proxy, the forwarded address counts
    queue.event_ids_to_events.clear()  # once they finish, the greedy session may ask again
    assert asyncio.run(queue.push(SimpleNamespace(session_hash="greedy"), request("10.0.0.9"), None))[0]


def test_the_page_still_works_after_the_abuse(app_url):
    with httpx.Client(base_url=app_url, timeout=30) as http:
        assert http.get("").status_code == 200 and "vaedemo" in http.get("config").text
        assert json.loads(http.get("config").text)["version"]


def test_session_state_is_bounded_and_idle_sessions_expire(app_url):
    import datetime

    from vaedemo.ui.guard import SESSION_CAPACITY, expire_idle_sessions

    holder = SimpleNamespace(lock=threading.Lock(), session_data={}, time_last_used={})
    now = datetime.datetime.now()
    for i in range(10):
        holder.session_data[f"s{i}"] = object()
        holder.time_last_used[f"s{i}"] = now - datetime.timedelta(hours=2 if i < 7 else 0)
    assert expire_idle_sessions(holder, idle_s=3600, now=now) == 7
    assert sorted(holder.session_data) == ["s7", "s8", "s9"] and sorted(holder.time_last_used) == sorted(
        holder.session_data
    )
    from vaedemo.ui import app as page

    demo = page.build_demo()
    from vaedemo.ui.server import build_app

    build_app(demo)
    assert demo.state_holder.capacity == SESSION_CAPACITY <= 2000  # not Gradio's 10,000 (~3 GB of state)


def test_bad_calls_get_sentences_not_empty_errors(app_url):
    with httpx.Client(base_url=app_url, timeout=30) as http:
        r = http.post("gradio_api/upload", files={"files": ("", b"\x89PNG\r\n\x1a\n")})
        assert r.status_code == 400 and "with a name" in r.json()["detail"]
        r = http.post("gradio_api/call/sample", json={"data": ["tiny-vae"]})
        assert r.status_code == 400 and "takes 5 inputs" in r.json()["detail"] and "sent 1" in r.json()["detail"]
        assert http.get("config").status_code == 200  # and the server goes on


def test_the_download_sweep_never_follows_a_planted_symlink(tmp_path, monkeypatch):
    """Issue: the cleanup followed a symlink planted in $TMPDIR/vaedemo-downloads and deleted what it pointed at."""
    from vaedemo.ui import shared

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("not the app's to delete")
    downloads = tmp_path / "vaedemo-downloads"
    downloads.mkdir()
    (downloads / "planted").symlink_to(victim, target_is_directory=True)
    (downloads / "planted-file").symlink_to(victim / "precious.txt")
    monkeypatch.setattr(shared, "EXPORT_DIR", downloads)
    for link in downloads.iterdir():
        os.utime(link, (0, 0), follow_symlinks=False)  # "older than an hour"
    shared.sweep_exports(now=time.time() + 10 * 3600)
    assert (victim / "precious.txt").read_text().startswith("not the app's")
    assert shared.export_path("x.png").parent.parent == downloads  # the app still gets its folders there
    downloads_link = tmp_path / "planted-dir"
    downloads_link.symlink_to(victim, target_is_directory=True)
    monkeypatch.setattr(shared, "EXPORT_DIR", downloads_link)  # the whole folder planted as a symlink
    path = shared.export_path("y.png")
    assert not downloads_link.is_symlink() and path.parent.parent == downloads_link
    assert (victim / "precious.txt").exists()
