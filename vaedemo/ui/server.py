"""The server: one explicit setup step, a FastAPI app serving the page's static files with the Blocks mounted,
/health, and the address to listen on."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import threading
from pathlib import Path

import fastapi
import gradio as gr
import plotly
from fastapi.responses import FileResponse, Response

from .. import __version__, jobs
from ..checkpoints import clean_stale
from ..images import MAX_UPLOAD_BYTES, configure_pillow
from ..inference import browser
from .app import CSS, PAGE_JS, build_demo
from .guard import SESSION_CAPACITY, BodyLimit, TempSweeper, expire_idle_sessions, share_the_queue
from .live import page_head
from .shared import STATIC_DIR, STATIC_ROUTE, sprite_png, sweep_exports

log = logging.getLogger(__name__)
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"

_setup_done = False

# onnxruntime-web's WASM build, vendored by scripts/vendor_onnxruntime_web.sh (PROVENANCE.md there): file → type.
# The .wasm is stored brotli-compressed (14.8 MB raw, over Hugging Face's 10 MB limit without Git LFS).
ORT_DIR = STATIC_DIR / "ort"
ORT_FILES = {"ort.wasm.min.js": "text/javascript", "ort-wasm-simd-threaded.mjs": "text/javascript",
             "ort-wasm-simd-threaded.wasm": "application/wasm"}
_ENCODED: dict[tuple, bytes] = {}  # (what, encoding) → body, made once per process
_ENCODED_LOCK = threading.Lock()


def _ort_raw(fname: str) -> bytes:
    if fname.endswith(".wasm"):
        import brotli

        return brotli.decompress((ORT_DIR / f"{fname}.br").read_bytes())
    return (ORT_DIR / fname).read_bytes()


def encoded_body(key: tuple, accept: str, raw, brotli_body=None) -> tuple[bytes, str | None]:
    """(body, Content-Encoding) for a client sending ``accept`` (its Accept-Encoding): brotli where it takes it
    and ``brotli_body()`` gives one, else gzip, else as it is. Bodies are made once per ``key`` and kept;
    ``raw`` and ``brotli_body`` are functions, called only when needed."""
    accept = accept.lower()
    if brotli_body is not None and "br" in accept:
        wanted = "br"
    elif "gzip" in accept:
        wanted = "gzip"
    else:
        wanted = None
    with _ENCODED_LOCK:
        body = _ENCODED.get((*key, wanted))
    if body is None:
        data = raw()
        body = brotli_body() if wanted == "br" else gzip.compress(data, 6, mtime=0) if wanted == "gzip" else data
        with _ENCODED_LOCK:
            if len(_ENCODED) > 64:
                _ENCODED.clear()
            _ENCODED[(*key, wanted)] = body
    return body, wanted


def _encoded_response(body: bytes, encoding: str | None, media_type: str, headers: dict) -> Response:
    extra = {"Vary": "Accept-Encoding", **headers}
    if encoding:
        extra["Content-Encoding"] = encoding
    return Response(body, media_type=media_type, headers=extra)


def setup() -> None:
    """The process-wide settings a server needs, done once when the app starts (not on import):
    no Gradio telemetry, Pillow's limits for visitors' pictures, logging, and the checkpoint folder
    cleaned of what a killed save left behind."""
    global _setup_done
    configure_pillow()  # every time (it is idempotent): a caller's warnings.catch_warnings() may have undone it
    if _setup_done:
        return
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # gradio reads it when it launches
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        gone = clean_stale()
    except OSError as e:  # a read-only checkpoints folder (a Space) has nothing to clean
        log.warning("could not clean the checkpoints folder: %s", e)
    else:
        if gone:
            log.info("removed %d folders left by interrupted saves", len(gone))
    _setup_done = True


def off_the_main_thread(fn):
    """``fn()`` run in a thread that ends with it. Building the page loads and checks models, and torch work on
    the main thread leaves an OpenMP team there for the life of the process: with it, libgomp manages more threads
    than there are cores and puts idle workers to sleep, so every parallel region of the training thread first
    wakes them (training in a thread ran about 1.5x slower after one matrix product on the main thread;
    benchmarks/thread_penalty.py measures it). A thread's team ends with the thread."""
    out: dict = {}

    def work():
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the caller
            out["error"] = e

    thread = threading.Thread(target=work, name="vaedemo-build")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


class CrossOriginIsolation:
    """Every response says COOP same-origin and COEP credentialless, so the page is cross-origin isolated:
    that gives it SharedArrayBuffer, which onnxruntime-web needs to decode on several WASM threads. Everything
    the page loads is served here, so nothing is blocked; a browser without credentialless (Safari), or the
    page inside a frame that is not isolated (a Space on huggingface.co), decodes on one thread as before."""

    HEADERS = [(b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-embedder-policy", b"credentialless")]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_isolated(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, send_isolated)


def build_app(demo: gr.Blocks | None = None) -> fastapi.FastAPI:
    """A FastAPI app serving plotly.js and the digit sprite from this package, with the Blocks mounted at /."""
    setup()
    demo = demo or off_the_main_thread(build_demo)
    threading.Thread(target=sprite_png, name="vaedemo-sprite", daemon=True).start()  # ready before the first hover
    demo.state_session_capacity = SESSION_CAPACITY  # read when the Blocks are mounted
    app = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    cache = {"Cache-Control": "public, max-age=86400"}

    @app.get(f"/{STATIC_ROUTE}/plotly.min.js", include_in_schema=False)
    def plotly_js():
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers=cache)

    @app.get(f"/{STATIC_ROUTE}/digits.png", include_in_schema=False)
    def digit_sprite():
        return Response(sprite_png(), media_type="image/png", headers=cache)

    @app.get(f"/{STATIC_ROUTE}/ort/{{fname}}", include_in_schema=False)
    def ort_file(fname: str, request: fastapi.Request):
        if fname not in ORT_FILES:
            return Response("Not found", status_code=404, media_type="text/plain")
        brotli_body = (lambda: (ORT_DIR / f"{fname}.br").read_bytes()) if fname.endswith(".wasm") else None
        body, enc = encoded_body(("ort", fname), request.headers.get("accept-encoding", ""),
                                 lambda: _ort_raw(fname), brotli_body)
        return _encoded_response(body, enc, ORT_FILES[fname], cache)

    @app.get(f"/{STATIC_ROUTE}/onnx/{{checkpoint}}/{{which}}.onnx", include_in_schema=False)
    def onnx_file(checkpoint: str, which: str, request: fastapi.Request):
        # The page adds ?v=<weights' fingerprint>, so a retrained checkpoint is fetched afresh despite the cache.
        try:
            data = browser.onnx_file(checkpoint, which)
        except ValueError as e:
            return Response(str(e), status_code=404, media_type="text/plain")
        digest = hashlib.sha1(data).hexdigest()
        body, enc = encoded_body(("onnx", digest), request.headers.get("accept-encoding", ""), lambda: data)
        return _encoded_response(body, enc, "application/octet-stream", cache)

    @app.get(f"/{STATIC_ROUTE}/codes/{{checkpoint}}.bin", include_in_schema=False)
    def code_file(checkpoint: str, request: fastapi.Request):
        # the bundled digits' codes, for the nearest digits while drawing; ?v= as for the ONNX files
        try:
            data = browser.bundled_code_file(checkpoint)
        except ValueError as e:
            return Response(str(e), status_code=404, media_type="text/plain")
        digest = hashlib.sha1(data).hexdigest()
        body, enc = encoded_body(("codes", digest), request.headers.get("accept-encoding", ""), lambda: data)
        return _encoded_response(body, enc, "application/octet-stream", cache)

    # Made before the first visitor needs it: the gzip of the 14.8 MB .wasm takes about a second.
    threading.Thread(target=encoded_body, args=(("ort", "ort-wasm-simd-threaded.wasm"), "gzip",
                                                lambda: _ort_raw("ort-wasm-simd-threaded.wasm"), None),
                     name="vaedemo-ort-gzip", daemon=True).start()
    app = gr.mount_gradio_app(
        app,
        demo,
        path="/",
        max_file_size=MAX_UPLOAD_BYTES,
        enable_monitoring=False,
        show_error=False,  # only gr.Error sentences reach the browser, never exception text
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
        js=PAGE_JS,
        head=page_head(),  # the in-browser runtime starts loading with the page, whatever tab opens first
    )
    # Gradio accepts an input file only from its upload folder once the Blocks count as launched
    # (processing_utils._check_allowed); demo.launch() sets the flag, mount_gradio_app does not. Without
    # it an API client could name any file on the server, e.g. {"path": "/etc/passwd"}, as its "upload".
    demo.has_launched = True
    share_the_queue(demo._queue)  # one client holds at most a few places in the shared queue
    app.add_middleware(BodyLimit)  # bodies over the limit are refused before anything parses them
    app.add_middleware(CrossOriginIsolation)
    app.state.sweeper = TempSweeper(
        lambda: [Path(demo.GRADIO_CACHE)], also=[sweep_exports, lambda: expire_idle_sessions(demo.state_holder)]
    ).start()
    return app


def server_address() -> tuple[str, int]:
    """Host and port from GRADIO_SERVER_NAME and PORT / GRADIO_SERVER_PORT (127.0.0.1:7860 by default)."""
    host = os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    raw = os.environ.get("PORT") or os.environ.get("GRADIO_SERVER_PORT") or "7860"
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"The port must be a number, not {raw!r} (check PORT / GRADIO_SERVER_PORT).") from None
    return host, port


def serve() -> None:
    """Start the app and serve it until interrupted (``python app.py``, ``make run``, ``vaedemo serve``)."""
    import uvicorn

    setup()
    host, port = server_address()
    app = build_app()
    jobs.warm_worker()  # the training process's imports, done while the first visitor arrives
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    print(f"vaedemo {__version__}: open http://{shown}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
