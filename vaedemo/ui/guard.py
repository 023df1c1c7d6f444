"""What keeps one visitor from taking the server down or crowding others out.

- ``BodyLimit``: an ASGI middleware that refuses a request body over its limit before anything
  parses it (413), whether the size is declared or only found while reading.
- ``share_the_queue``: each client (browser session, and address) holds at most a few places in the
  queue at once; more get a sentence asking them to wait.
- ``TempSweeper``: partial uploads and old downloads in the app's own temp folders are deleted,
  only regular files inside those folders, never through a symlink.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JSON_LIMIT = 2 * 1024 * 1024  # the largest honest call (a data-URL digit, a training request) is far below it
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")
MAX_PER_SESSION = 4  # places one browser session may hold in the queue at once (waiting or running)
MAX_PER_ADDRESS = 24  # and one address (many visitors can share one, behind a school's router)
SESSION_CAPACITY = 2000  # browser sessions whose state is kept (Gradio's default, 10,000, is ~3 GB of it)
SESSION_IDLE_S = 3600  # a session unused this long is forgotten
SWEEP_EVERY_S = 300
SWEEP_AGE_S = 600  # a temp file this old that no request holds is an orphan


class BodyLimit:
    """Refuse bodies over ``limit`` bytes (``upload_limit`` for file uploads) with 413, before parsing."""

    def __init__(self, app: Any, limit: int = JSON_LIMIT, upload_limit: int = 11 * 1024 * 1024):
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    def _limit_for(self, path: str) -> int:
        return self.upload_limit if path.rstrip("/").endswith(UPLOAD_PATHS) else self.limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self._limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = True  # not a number: refuse rather than guess
            if too_big:
                return await _refuse(send, limit)
        seen = 0
        started = refused = crashed = False

        async def counted_receive():
            # Past the limit the app is told the client left (and gets no more of the body), and the
            # client gets the 413; whatever the app answers after that is dropped.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    if not started:
                        await _refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started, crashed
            if refused or crashed:
                return
            if message["type"] == "http.response.start":
                if message.get("status") == 500:  # Gradio's own error page for a crash: answered below
                    crashed = True
                    return
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception:
            if refused:
                return
            if started:
                raise
            crashed = True
        if crashed:
            # A malformed request Gradio does not answer itself (an upload part with an empty file name
            # raised a TypeError, HTTP 500 and a traceback): one sentence, and the server goes on.
            log.warning("a request to %s failed", scope.get("path", "")[:100])
            upload = limit == self.upload_limit
            await _answer(
                send,
                400 if upload else 500,
                "The upload could not be read: send the picture as a file with a name."
                if upload
                else "Something went wrong on the server; try again.",
            )


async def _refuse(send, limit: int) -> None:
    await _answer(
        send,
        413,
        f"The request is larger than this server accepts ({limit // 2**20} MB); "
        "send a smaller picture or fewer values.",
    )


async def _answer(send, status: int, sentence: str) -> None:
    body = json.dumps({"detail": sentence}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def client_address(request: Any) -> str | None:
    """Where a request comes from: the first X-Forwarded-For hop behind a proxy (a Space), else the peer."""
    headers = getattr(request, "headers", None) or {}
    forwarded = headers.get("x-forwarded-for") if hasattr(headers, "get") else None
    if forwarded:
        return forwarded.split(",")[0].strip()[:64] or None
    return getattr(getattr(request, "client", None), "host", None)


def _missing_inputs(queue: Any, body: Any) -> str | None:
    """A sentence when a call sends fewer inputs than its endpoint takes (Gradio's own check fails with an
    empty message), else None."""
    fn = getattr(getattr(queue, "blocks", None), "fns", {}).get(getattr(body, "fn_index", None))
    data = getattr(body, "data", None)
    if fn is None or not isinstance(data, list) or len(data) >= len(fn.inputs):
        return None
    names = [getattr(c, "label", None) or type(c).__name__ for c in fn.inputs]
    shown = ", ".join(str(n)[:40] for n in names[:12])
    return (
        f"This endpoint takes {len(fn.inputs)} inputs ({shown}) but the call sent {len(data)}; "
        "send one value for each (gradio_client's view_api() lists them)."
    )


def share_the_queue(queue: Any, per_session: int = MAX_PER_SESSION, per_address: int = MAX_PER_ADDRESS) -> None:
    """Wrap Gradio's ``Queue.push`` so that one browser session holds at most ``per_session`` events
    (waiting or running) and one address at most ``per_address``: one client cannot fill the queue
    that everyone shares (``QUEUE_SIZE``). push runs on the event loop and counts before it awaits,
    so two pushes cannot both slip under a cap."""
    original = queue.push

    async def push(body, request, username):
        missing = _missing_inputs(queue, body)
        if missing:
            return False, missing, "error"
        session = getattr(body, "session_hash", None)
        address = client_address(request)
        events = list(queue.event_ids_to_events.values())
        same_session = sum(1 for e in events if session is not None and e.session_hash == session)
        same_address = sum(1 for e in events if address is not None and client_address(e.request) == address)
        if same_session >= per_session or same_address >= per_address:
            held = max(same_session, same_address)
            return (
                False,
                f"You already have {held} requests waiting or running; wait until one of them "
                "finishes, then try again.",
                "queue_full",
            )
        return await original(body, request, username)

    queue.push = push


def expire_idle_sessions(holder: Any, idle_s: float = SESSION_IDLE_S, now: Any = None) -> int:
    """Forget the state of sessions unused for ``idle_s`` seconds (Gradio keeps each until its capacity
    is reached); returns how many went. ``holder`` is Gradio's StateHolder (``app.state_holder``)."""
    import datetime

    now = now or datetime.datetime.now()
    with holder.lock:
        idle = [sid for sid, used in list(holder.time_last_used.items()) if (now - used).total_seconds() > idle_s]
        for sid in idle:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)
    return len(idle)


class TempSweeper:
    """Deletes orphaned files in the app's own temp folders: at start and every ``every_s`` seconds.

    Gradio streams each upload into a temporary file at the top of its temp folder and moves it into a
    subfolder once the upload is whole; a cut-off upload leaves its part behind there, forever. So the
    regular files directly inside ``folders`` that are older than ``age_s`` (an upload still arriving
    keeps its file fresh) are deleted, never a symlink's target and never anything in a subfolder.
    ``also`` are further sweeps run on the same schedule (the downloads folder's own sweep).
    """

    def __init__(
        self,
        folders: Callable[[], Iterable[Path]],
        age_s: float = SWEEP_AGE_S,
        every_s: float = SWEEP_EVERY_S,
        also: Iterable[Callable[[], int]] = (),
    ):
        self.folders = folders
        self.age_s = age_s
        self.every_s = every_s
        self.also = list(also)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, now: float | None = None) -> int:
        """Delete the orphans now; returns how many files went."""
        now = time.time() if now is None else now
        removed = 0
        for folder in self.folders():
            folder = Path(folder)
            if folder.is_symlink() or not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                try:
                    if (
                        entry.is_file(follow_symlinks=False)
                        and now - entry.stat(follow_symlinks=False).st_mtime > self.age_s
                    ):
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    pass
        for extra in self.also:
            removed += extra()
        if removed:
            log.info("swept %d orphaned temp files", removed)
        return removed

    def start(self) -> TempSweeper:
        self.sweep()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vaedemo-sweeper", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sweep()
            except Exception:  # the sweeper must never die
                log.exception("temp sweep failed")

    def stop(self) -> None:
        self._stop.set()
