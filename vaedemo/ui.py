"""The Gradio app: Reconstruct, Latent map, Sample, Train and About tabs, mounted on a small FastAPI app.

Gradio and layout only. Handlers call vaedemo.service, plots and exports (numpy, PIL and Plotly in
and out) and turn their ValueErrors into gr.Error sentences; per-user state lives in gr.State.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import inspect
import io
import json
import logging
import math
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry; gradio reads this when it launches

import fastapi  # noqa: E402
import gradio as gr  # noqa: E402
import gradio.component_meta as component_meta  # noqa: E402
import numpy as np  # noqa: E402
import plotly  # noqa: E402
from fastapi.responses import FileResponse, Response  # noqa: E402
from PIL import Image  # noqa: E402

from . import __version__, exports, jobs, plots, service, zerogpu  # noqa: E402
from .data import DATASETS, bundled_digits  # noqa: E402
from .images import MAX_UPLOAD_BYTES, to_pil  # noqa: E402

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
STATIC_ROUTE = "vaedemo-static"  # relative URLs, so the app also works under a proxy's sub-path
SPRITE_COLS = 100  # the digit sprite is 100 × 100 tiles of 28 px
DIGIT_SCALE = 8  # 28 px → 224 px on screen, nearest-neighbour
QUEUE_SIZE = 64  # requests waiting at most; more get "the queue is full"
CONCURRENCY = 2  # requests of one kind run at once (the Space has 2 CPU cores)
MAP_DEFAULT_N = 5000
EXAMPLE_INDICES_PER_CLASS = 2
NONE_CHOICE = ("— none —", "")
N_REC_OUTPUTS = 10  # 4 images, samples (column + image), scores, code, neighbours, state
MODEL_KINDS = [("VAE (MLP, as in the lecture)", "vae"), ("Conv VAE", "conv-vae"),
               ("Conditional VAE (CVAE)", "cvae"), ("Plain autoencoder (AE)", "ae")]

_OOPS = ("Something went wrong on the server ({kind}). Try again, or pick another model; "
         "the details are in the server log.")


# ---------------------------------------------------------------------------------- errors


def _as_gr_error(exc: Exception) -> gr.Error:
    """ValueError → its sentence; anything else → a generic sentence (the traceback goes to the log)."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, ValueError):
        return gr.Error(str(exc))
    log.error("handler failed", exc_info=exc)
    return gr.Error(_OOPS.format(kind=type(exc).__name__))


def friendly(fn):
    """Wrap a handler (function or generator) so that every failure reaches the user as a gr.Error."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise _as_gr_error(exc) from None
        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise _as_gr_error(exc) from None
    return wrapper


def _whole(value: Any, what: str, lo: int, hi: int) -> int:
    """UI-side check for numbers only the UI uses (the service checks its own)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, not {value!r}.") from None
    if not math.isfinite(number) or number != int(number) or not lo <= number <= hi:
        raise ValueError(f"{what} must be a whole number from {lo} to {hi}, not {value!r}.")
    return int(number)


def _event_data(evt: gr.EventData | None) -> dict:
    data = getattr(evt, "_data", None)
    return data if isinstance(data, dict) else {}


# ---------------------------------------------------------------------------------- images


@contextlib.contextmanager
def _no_stub_file():
    """Gradio writes a .pyi copy of the defining module for every Component subclass; not into our package."""
    original = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args, **kwargs: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = original


def _png_in_cache(value: Any, cache_dir: str) -> Any:
    """A PIL picture → the path of a PNG copy in Gradio's cache, written under a temporary name and renamed
    into place; anything else is returned as it is.

    Gradio's own save_pil_to_cache rewrites its content-addressed file in place, so when two users get the
    same picture at the same moment (the same seed, the same manifold, a popular neighbour) one of them
    could be served a half-written file. Found by the 20-user load test.
    """
    if not isinstance(value, Image.Image):
        return value
    buf = io.BytesIO()
    value.save(buf, format="PNG")
    data = buf.getvalue()
    path = Path(cache_dir) / hashlib.sha256(data).hexdigest() / "image.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".image.png.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return str(path)


with _no_stub_file():
    class PictureOut(gr.Image):
        """gr.Image whose PIL values reach Gradio's cache whole (see _png_in_cache)."""

        def get_block_name(self) -> str:
            return "image"

        def postprocess(self, value):
            return super().postprocess(_png_in_cache(value, self.GRADIO_CACHE))

    class GalleryOut(gr.Gallery):
        """gr.Gallery whose PIL items reach Gradio's cache whole (see _png_in_cache)."""

        def get_block_name(self) -> str:
            return "gallery"

        def postprocess(self, value):
            if isinstance(value, list):
                value = [(_png_in_cache(v[0], self.GRADIO_CACHE), *v[1:]) if isinstance(v, tuple)
                         else _png_in_cache(v, self.GRADIO_CACHE) for v in value]
            return super().postprocess(value)

    class DigitImage(PictureOut):
        """gr.Image that hands the upload's path to vaedemo.images untouched.

        gr.Image would open the file with PIL itself, so a damaged or hostile file would fail inside
        Gradio with a bare traceback; vaedemo.images reads it with size limits and clear sentences.
        """

        def get_block_name(self) -> str:
            return "image"

        def preprocess(self, payload):
            if payload is None:
                return None
            url = getattr(payload, "url", None) or ""
            if url.startswith("data:"):  # an API client may send a data URL instead of uploading
                body = url.partition(",")[2]
                if len(body) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
                    raise gr.Error("The image is larger than the upload limit; send a smaller picture.")
                try:
                    return base64.b64decode(body)
                except ValueError:
                    raise gr.Error("The data URL does not hold base64 image data.") from None
            if payload.path is None:
                raise gr.Error("No image arrived; upload it again.")
            return str(payload.path)


def _number_or_error(payload: Any, label: str | None, optional: bool) -> Any:
    """Gradio compares a number field's raw JSON value with its bounds, so null, text or a list from an
    API client would fail there with an empty error; answer them with a sentence instead."""
    if payload is None and optional:
        return None
    if isinstance(payload, bool) or not isinstance(payload, (int, float)):
        shown = repr(payload) if len(repr(payload)) <= 40 else repr(payload)[:37] + "..."
        raise gr.Error(f"“{label or 'This setting'}” must be a number, not {shown}.")
    return payload  # NaN and ±inf go on: the bounds or the service's checks answer them with a sentence


with _no_stub_file():
    class NumberSlider(gr.Slider):
        """gr.Slider that refuses a value that is not a number with a sentence (see _number_or_error)."""

        def get_block_name(self) -> str:
            return "slider"

        def preprocess(self, payload):
            return super().preprocess(_number_or_error(payload, self.label, optional=False))

    class NumberBox(gr.Number):
        """gr.Number that refuses a value that is not a number (or empty) with a sentence."""

        def get_block_name(self) -> str:
            return "number"

        def preprocess(self, payload):
            return super().preprocess(_number_or_error(payload, self.label, optional=True))


def _digit(arr: np.ndarray, scale: int = DIGIT_SCALE) -> Image.Image:
    return to_pil(arr, scale)


def _strip(images: np.ndarray, scale: int = 3, ncols: int | None = None) -> Image.Image:
    return exports.image_grid(images, ncols=ncols or len(images), scale=scale, pad=2)


def _error_image(error: np.ndarray, scale: int = DIGIT_SCALE) -> Image.Image:
    """Signed error (28, 28) → RGB: white if equal, red where the reconstruction adds ink, blue where it lacks it."""
    e = np.clip(np.nan_to_num(np.asarray(error, np.float32)), -1.0, 1.0)
    extra, missing = np.clip(e, 0, 1), np.clip(-e, 0, 1)
    rgb = np.ones(e.shape + (3,), np.float32)
    rgb[..., 0] -= missing
    rgb[..., 1] -= extra + missing
    rgb[..., 2] -= extra
    img = Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)


@functools.lru_cache(maxsize=1)
def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 bundled digits (uint8 (N, 28, 28), labels (N,)), read once for thumbnails."""
    x, y = bundled_digits()
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


@functools.lru_cache(maxsize=1)
def _sprite_png() -> bytes:
    """All bundled digits as one PNG sprite (row-major, SPRITE_COLS per row), for hover thumbnails."""
    digits = _bundled()[0].astype(np.float32) / 255.0  # (10000, 28, 28)
    buf = io.BytesIO()
    exports.image_grid(digits, ncols=SPRITE_COLS).save(buf, format="PNG", compress_level=6)  # no slow optimize pass
    return buf.getvalue()


_EXPORT_DIR = Path(tempfile.gettempdir()) / "vaedemo-downloads"
_EXPORT_TTL_S = 3600
_export_lock = threading.Lock()


def _export_path(filename: str) -> Path:
    """A fresh folder under the system temp dir for one download (Gradio copies it into its cache);
    folders older than an hour are removed on the way."""
    with _export_lock:
        _EXPORT_DIR.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in _EXPORT_DIR.iterdir():
            try:
                if now - old.stat().st_mtime > _EXPORT_TTL_S:
                    for f in old.iterdir():
                        f.unlink(missing_ok=True)
                    old.rmdir()
            except OSError:
                pass
        folder = Path(tempfile.mkdtemp(dir=_EXPORT_DIR))
    return folder / filename


# ---------------------------------------------------------------------------------- checkpoints


def _choices() -> list[tuple[str, str]]:
    return service.checkpoint_choices()


def _pick(current: Any, choices: list[tuple[str, str]], prefer: tuple[str, ...] = ("VAE",)) -> str | None:
    """Keep ``current`` if it still exists, else the first checkpoint whose label shows a preferred kind."""
    names = [name for _, name in choices]
    if current in names:
        return current
    for kind in prefer:
        for label, name in choices:
            if f"· {kind} ·" in label:
                return name
    return names[0] if names else None


def refresh_checkpoint(current: Any = None):
    choices = _choices()
    return gr.update(choices=choices, value=_pick(current, choices))


def refresh_compare(current: Any = None):
    choices = _choices()
    value = current if current in [n for _, n in choices] else ""
    return gr.update(choices=[NONE_CHOICE, *choices], value=value)


def _need(checkpoint: Any) -> str:
    if not checkpoint:
        raise ValueError("Choose a model first; if the list is empty, train one in the Train tab.")
    return checkpoint


def _info(checkpoint: str) -> dict:
    return service.checkpoint_info(_need(checkpoint))


# ---------------------------------------------------------------------------------- Reconstruct


def _score_cells(r: service.Reconstruction, info: dict) -> dict[str, str]:
    cells = {"Model": f"**{info['name']}** ({info['kind_label']}, latent {info['latent_dim']})",
             "Error per pixel (MSE)": f"{r.mse:.4f}",
             "Cross-entropy −log p(x\\|z), nats": f"{r.bce_nats:.1f}",
             "−ELBO, nats (lower = more typical)": "— (an AE has no probability model)"}
    if r.neg_elbo is not None:
        cells["−ELBO, nats (lower = more typical)"] = f"{r.neg_elbo:.1f}"
    if r.elbo_percentile is not None:
        p = r.elbo_percentile
        verdict = "unusual for this model" if p >= 95 else "typical" if p <= 75 else "a bit unusual"
        cells["How typical"] = f"−ELBO higher than for {p:.0f}% of validation digits: **{verdict}**"
    if r.label_used is not None:
        names = info.get("class_names") or []
        name = names[r.label_used] if r.label_used < len(names) else r.label_used
        cells["Label given to the CVAE"] = f"{name} (the one it finds most likely)"
    return cells


def _scores_md(*results: tuple[service.Reconstruction, dict]) -> str:
    """A table of scores, one column per model (two when comparing)."""
    columns = [_score_cells(r, info) for r, info in results]
    rows = list(dict.fromkeys(k for c in columns for k in c))
    head = "| Score | " + " | ".join(["This model", "Compared with"][: len(columns)]) + " |\n"
    head += "|---" * (len(columns) + 1) + "|\n"
    return head + "\n".join(f"| {k} | " + " | ".join(c.get(k, "—") for c in columns) + " |" for k in rows)


def _reconstruct_view(x: np.ndarray, checkpoint: Any, compare_with: Any) -> tuple:
    info = _info(checkpoint)
    r = service.reconstruct(x, checkpoint, n_samples=8)
    digits = _bundled()[0]
    samples = ((gr.update(visible=True), _strip(r.samples, scale=3)) if len(r.samples)
               else (gr.update(visible=False), None))
    neighbours = [(_digit(digits[i].astype(np.float32) / 255.0, 3), f"{label} · {d:.2f}")
                  for i, label, d in r.neighbours]
    results = [(r, info)]
    compare = gr.update(value=None, visible=False)
    if compare_with:
        cinfo = _info(compare_with)
        c = service.reconstruct(x, compare_with, n_samples=0)
        results.append((c, cinfo))
        compare = gr.update(value=_digit(c.recon), visible=True, label=f"{cinfo['kind_label']}: {cinfo['name']}")
    code = plots.code_bars(r.mu, r.sigma)
    code.update_layout(height=300, margin=dict(t=40, b=40))
    if len(r.mu) > 32:  # hundreds of bars: thin error bars, or they merge into one dark block
        code.update_traces(error_y_thickness=0.6, error_y_width=0, marker_line_width=0)
    return (_digit(r.input), _digit(r.recon), compare, _error_image(r.error_map), *samples, _scores_md(*results),
            code, neighbours, r.input)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct(image, checkpoint, compare_with=""):
    """/reconstruct: an uploaded digit → input as the model sees it, reconstruction, error map, samples, scores."""
    if image is None:
        raise ValueError("Upload an image of a digit first (PNG, JPEG, GIF, BMP or WebP).")
    return _reconstruct_view(service.digit_input(image), _need(checkpoint), compare_with)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct_sketch(sketch, checkpoint, compare_with=""):
    """The sketchpad: a blank canvas (e.g. just cleared) leaves the results as they are."""
    try:
        x = service.digit_input(sketch)
    except ValueError as exc:
        if "blank" in str(exc):
            return tuple(gr.skip() for _ in range(N_REC_OUTPUTS))
        raise
    return _reconstruct_view(x, _need(checkpoint), compare_with)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct_example(checkpoint, compare_with, evt: gr.SelectData):
    index = example_indices()[_whole(evt.index, "The example", 0, len(example_indices()) - 1)]
    return _reconstruct_view(service.digit_input(index), _need(checkpoint), compare_with)


@friendly
@zerogpu.gpu("reconstruct")
def reconstruct_again(here, checkpoint, compare_with=""):
    """The model changed: redo the last input (nothing to do before the first one)."""
    if here is None or not checkpoint:
        return tuple(gr.skip() for _ in range(N_REC_OUTPUTS))
    return _reconstruct_view(np.asarray(here, np.float32), checkpoint, compare_with)


@functools.lru_cache(maxsize=1)
def example_indices() -> list[int]:
    labels = _bundled()[1]
    return [int(i) for c in range(10) for i in np.flatnonzero(labels == c)[:EXAMPLE_INDICES_PER_CLASS]]


def example_gallery() -> list[tuple[Image.Image, str]]:
    digits = _bundled()[0]
    labels = _bundled()[1]
    return [(_digit(digits[i].astype(np.float32) / 255.0, 3), str(labels[i])) for i in example_indices()]


# ---------------------------------------------------------------------------------- Latent map


def _here_key(here: Any) -> str | None:
    if here is None:
        return None
    return hashlib.sha1(np.asarray(here, np.float32).tobytes()).hexdigest()[:12]


def _map_payload(lm: service.LatentMap, here_xy: tuple[float, float] | None,
                 prior_xy: np.ndarray | None = None) -> str:
    method_name = "PCA" if lm.method == "pca" else "t-SNE"
    caption = (f"{lm.n:,} digits, {method_name} of the codes (μ) of {lm.checkpoint}. Hover a point to see "
               "its digit; click a point for its reconstruction; click empty space to decode that place.")
    payload = {
        "checkpoint": lm.checkpoint, "method": lm.method,
        "axis": ["PC 1", "PC 2"] if lm.method == "pca" else ["t-SNE 1", "t-SNE 2"],
        "x": np.round(lm.coords[:, 0].astype(np.float64), 4).tolist(),
        "y": np.round(lm.coords[:, 1].astype(np.float64), 4).tolist(),
        "label": np.asarray(lm.labels, np.int64).tolist(),
        "index": np.asarray(lm.indices, np.int64).tolist(),
        "classes": [str(c) for c in range(10)],
        "colours": plots.CLASS_COLOURS,
        "here": [round(here_xy[0], 4), round(here_xy[1], 4)] if here_xy else None,
        "prior": ({"x": np.round(prior_xy[:, 0].astype(np.float64), 4).tolist(),
                   "y": np.round(prior_xy[:, 1].astype(np.float64), 4).tolist()} if prior_xy is not None else None),
        "sprite": {"url": f"{STATIC_ROUTE}/digits.png", "cols": SPRITE_COLS, "size": 28},
        "marker_size": 6 if lm.n <= 2000 else 5 if lm.n <= 5000 else 4,
        "caption": caption,
    }
    return json.dumps(payload, separators=(",", ":"))


def _manifold_update(checkpoint: str, info: dict):
    if info["latent_dim"] != 2:
        return gr.update(value=None, visible=False)
    digit = 0 if info["conditional"] else None
    grid = service.manifold_grid(checkpoint, n=15, digit=digit)
    label = "Decoded grid over the 2-D latent plane" + (" (digit 0)" if digit is not None else "")
    return gr.update(value=to_pil(grid, 1), visible=True, label=label)


@friendly
@zerogpu.gpu("latent_map")
def latent_map(checkpoint, method="pca", n=MAP_DEFAULT_N, here=None, progress=gr.Progress()):
    """/latent_map: encode n bundled digits and project their codes to 2-D; returns the map as JSON."""
    checkpoint = _need(checkpoint)
    n = _whole(n, "The number of digits", service.MIN_MAP_SIZE, service.MAP_SIZE)
    info = _info(checkpoint)
    lm = service.latent_map(checkpoint, method, n, progress=lambda f, msg: progress(f, desc=msg))
    here_xy = None
    if here is not None:
        try:
            here_xy = service.project_point(checkpoint, lm.method, np.asarray(here, np.float32), n=n)
        except ValueError:
            here_xy = None
    prior_xy = service.prior_centres(checkpoint, lm.method, n=n)
    note = (f"**{info['name']}** · {info['kind_label']} · latent {info['latent_dim']} · {lm.n:,} digits · "
            f"{'PCA' if lm.method == 'pca' else 't-SNE'}"
            + (f" (computed in {lm.seconds:.0f} s)" if lm.seconds >= 1 and not lm.from_disk else "")
            + ("\n\nThe black star marks the digit you gave on the Reconstruct tab." if here_xy else "")
            + (f"\n\nGrey diamonds: the centres of the {len(prior_xy)} Gaussians of this model's learnt prior, "
               "which samples are drawn around. Training moves them in among the digits' codes; a centre far "
               "from every digit decodes to a blend."
               + (" (t-SNE has no exact place for a new code: each centre is drawn among its nearest digits.)"
                  if lm.method == "tsne" else "")
               if prior_xy is not None else ""))
    key = {"checkpoint": checkpoint, "method": lm.method, "n": n, "here": _here_key(here)}
    return _map_payload(lm, here_xy, prior_xy), _manifold_update(checkpoint, info), note, key


@friendly
@zerogpu.gpu("latent_map")
def latent_map_auto(checkpoint, method, n, here, key, progress=gr.Progress()):
    """On opening the tab: draw the map unless the one shown is already up to date."""
    if not checkpoint:
        return gr.skip(), gr.skip(), "No models yet: train one in the Train tab.", gr.skip()
    wanted = {"checkpoint": checkpoint, "method": str(method).lower(), "n": _whole(n, "n", 1, 10**6),
              "here": _here_key(here)}
    if key == wanted:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return latent_map.__wrapped__(checkpoint, method, n, here, progress)


def _map_click(key, evt: gr.EventData) -> dict:
    """The click's data, once a map is drawn (``key`` says which)."""
    if not key:
        raise ValueError("Draw the map first.")
    return _event_data(evt)


@friendly
@zerogpu.gpu("reconstruct")
def map_point(key, evt: gr.EventData):
    """A click on a point: that digit and the model's reconstruction of it."""
    data = _map_click(key, evt)
    index = _whole(data.get("index"), "The digit number", 0, service.MAP_SIZE - 1)
    r = service.reconstruct(index, key["checkpoint"], n_samples=0)
    label = int(_bundled()[1][index])
    text = (f"**Digit #{index}** (label {label}): original on the left, reconstruction on the right. "
            f"Error {r.mse:.4f} per pixel.")
    return (gr.update(value=_digit(r.input, 6), label=f"Original #{index}"),
            gr.update(value=_digit(r.recon, 6), label="Reconstruction"), text)


@friendly
@zerogpu.gpu("reconstruct")
def map_space(key, evt: gr.EventData):
    """A click on empty space: decode the code behind that place of the map."""
    data = _map_click(key, evt)
    x, y = data.get("x"), data.get("y")
    p = service.decode_at(key["checkpoint"], key["method"], x, y, n=key["n"])
    how = "the exact inverse of PCA" if key["method"] == "pca" else "a weighted average of the 10 nearest codes"
    text = f"**Decoded the place ({float(x):.2f}, {float(y):.2f})** using {how}."
    if p.far:
        text += "\n\n**Far from the data:** no digit on the map lies near this place, so the decode is a guess."
    return gr.update(value=_digit(p.image, 6), label="Decoded at the clicked place"), text


# ---------------------------------------------------------------------------------- Sample


def _digit_choice(value: Any) -> int | None:
    if value in (None, "", "any"):
        return None
    return _whole(value, "The digit", 0, 9)


@friendly
@zerogpu.gpu("sample")
def sample(checkpoint, count=64, temperature=1.0, seed=0, digit="any"):
    """/sample: a reproducible grid of images decoded from the prior."""
    checkpoint = _need(checkpoint)
    info = _info(checkpoint)
    images = service.sample(checkpoint, count, temperature, seed, _digit_choice(digit) if info["conditional"] else None)
    ncols, scale, pad = math.ceil(math.sqrt(len(images))), 3, 2
    grid = exports.image_grid(images, ncols=ncols, scale=scale, pad=pad)
    note = info["sampling_note"]
    reading = service.read_digits(images)
    if reading is not None:  # the shown grid carries the classifier's labels; the download stays clean
        grid = exports.label_grid(grid, reading.labels, reading.clear, ncols,
                                  cell=images.shape[-1] * scale, gap=pad * scale)
        note += "\n\n" + _reading_note(reading)
    path = _export_path(f"samples-{checkpoint}-seed{int(float(seed))}.png")
    path.write_bytes(exports.to_png_bytes(exports.image_grid(images, pad=2)))
    return grid, gr.update(value=str(path), visible=True), note


def _reading_note(reading: service.Reading) -> str:
    clear = reading.clear
    counts = np.bincount(reading.labels[clear], minlength=10)
    read = " · ".join(f"{d}×{c}" for d, c in enumerate(counts) if c) or "none"
    return (f"**The digit classifier reads {int(clear.sum())} of {len(clear)} as clear digits** "
            f"(≥ {reading.threshold:.0%} sure; green labels). Amber labels with a ? mark blends and scribbles "
            f"it is unsure of. Clear ones by digit: {read}.")


@friendly
def sample_first_visit(checkpoint, count, temperature, seed, digit, shown):
    """Opening the tab shows a grid at once; later visits keep whatever the visitor made."""
    if shown is not None or not checkpoint:
        return gr.skip(), gr.skip(), gr.skip()
    return sample.__wrapped__(checkpoint, count, temperature, seed, digit)


@friendly
def sample_controls(checkpoint):
    """Adapt the Sample tab to the model: the digit choice for a cvae, and the traversal dimensions."""
    if not checkpoint:
        return gr.update(visible=False), "", gr.update(choices=[], value=[]), None
    info = _info(checkpoint)
    ranked = service.dims_by_kl(checkpoint)
    unit = "nats" if info["variational"] else "variance"
    dims = gr.update(choices=[(f"z{d} · {v:.2f} {unit}", d) for d, v in ranked],
                     value=[d for d, _ in ranked[: min(5, len(ranked))]])
    what = "KL" if info["variational"] else "Variance of the codes"
    bars = plots.kl_bars(ranked[:32], title=f"{what} per latent dimension, largest first")
    bars.update_layout(height=280)
    return gr.update(visible=info["conditional"]), info["sampling_note"], dims, bars


def _endpoint(image: Any, index: Any, what: str) -> np.ndarray:
    if image is not None:
        return service.digit_input(image)
    if index is None or index == "":
        raise ValueError(f"Give the {what} digit: upload one or type a dataset number (0-9999).")
    return service.digit_input(_whole(index, f"The {what} digit number", 0, service.MAP_SIZE - 1))


@friendly
@zerogpu.gpu("interpolate")
def interpolate(checkpoint, start_image=None, end_image=None, start_index=1, end_index=7, steps=10):
    """/interpolate: the straight (lerp) and spherical (slerp) path between two digits' codes."""
    checkpoint = _need(checkpoint)
    a = _endpoint(start_image, start_index, "start")
    b = _endpoint(end_image, end_index, "end")
    it = service.interpolate(checkpoint, a, b, steps)
    info = _info(checkpoint)
    norms = plots.norm_paths(it.t, it.lerp_norms, it.slerp_norms, typical_norm=info["typical_norm"])
    frames = np.concatenate([it.lerp, np.zeros_like(it.lerp[:, :, :4]), it.slerp], axis=2)  # (steps, 28, 60)
    gif = _export_path(f"interpolation-{checkpoint}.gif")
    exports.animated_gif(frames, gif, fps=8, scale=4, bounce=True)
    return _strip(it.lerp), _strip(it.slerp), norms, gr.update(value=str(gif), visible=True)


@friendly
@zerogpu.gpu("traverse")
def traverse(checkpoint, image=None, index=0, dims=None, steps=9, span=3.0):
    """/traverse: move one latent dimension at a time over ±span σ and decode."""
    checkpoint = _need(checkpoint)
    x = _endpoint(image, index, "input")
    tr = service.traverse(checkpoint, x, dims=list(dims) if dims else None, steps=steps, span=span)
    grid = exports.image_grid(tr.images, scale=3, pad=2)
    rows, cols = tr.images.shape[:2]
    frames = tr.images.transpose(1, 2, 0, 3).reshape(cols, 28, rows * 28)  # frame t: every dim side by side
    gif = _export_path(f"traversal-{checkpoint}.gif")
    exports.animated_gif(frames, gif, fps=6, scale=4, bounce=True)
    text = ("Rows, top to bottom: " + ", ".join(f"z{d}" for d in tr.dims)
            + f". Columns go from −{float(span):g} to +{float(span):g} σ; "
            "the middle column is the digit's own code.")
    return grid, gr.update(value=str(gif), visible=True), text


@friendly
def export_projector(checkpoint, n=2000, progress=gr.Progress()):
    """Latent codes as TSV + a sprite for https://projector.tensorflow.org."""
    checkpoint = _need(checkpoint)
    n = _whole(n, "The number of digits", service.MIN_MAP_SIZE, service.MAP_SIZE)
    lm = service.latent_map(checkpoint, "pca", n, progress=lambda f, msg: progress(f, desc=msg))
    images = _bundled()[0][lm.indices].astype(np.float32) / 255.0
    files = exports.projector_bundle(lm.codes, lm.labels, images, indices=lm.indices)
    folder = _export_path("x").parent
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(str(folder / name))
    zipped = folder / f"projector-{checkpoint}.zip"
    zipped.write_bytes(exports.zip_bytes(files))
    return [str(zipped), *paths]


def _endpoint_from_here(here):
    if here is None:
        raise gr.Error("Reconstruct a digit first (upload, draw or pick one on the Reconstruct tab).")
    return _digit(np.asarray(here, np.float32))


# ---------------------------------------------------------------------------------- Train


def _progress_html(u: jobs.TrainUpdate | None, text: str = "") -> str:
    if u is None:
        return f"<div class='vd-progress-text'>{text or 'Not started.'}</div>"
    pct = max(0.0, min(1.0, u.fraction)) * 100
    parts = [f"Epoch {u.epoch} of {u.epochs}" if u.epoch else "Starting", f"{pct:.0f}%"]
    if u.eta_s and not u.done:
        parts.append(f"about {_duration(u.eta_s)} left")
    if u.samples_per_s:
        parts.append(f"{u.samples_per_s:,.0f} samples/s")
    return (f"<div class='vd-progress' role='progressbar' aria-valuenow='{pct:.0f}' aria-valuemin='0' "
            f"aria-valuemax='100'><div class='vd-bar' style='width:{pct:.1f}%'></div></div>"
            f"<div class='vd-progress-text'>{' · '.join(parts)}</div>")


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _auto_name(kind: str) -> str:
    return f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"


def _train_view(u: jobs.TrainUpdate) -> tuple:
    loss = plots.loss_curves(u.history) if u.history else gr.skip()
    recon = (exports.image_grid(np.stack([u.preview_originals, u.preview_recon]), scale=3, pad=2)
             if u.preview_recon is not None else gr.skip())
    prior = _strip(u.prior_samples) if u.prior_samples is not None else gr.skip()
    live = (plots.latent_scatter(u.map_coords, u.map_labels, title=f"Validation codes after epoch {u.epoch}",
                                 marker_size=5)
            if u.map_coords is not None else gr.skip())
    status = u.message
    if u.error:
        status = f"**Training failed:** {u.error}"
    elif u.done and u.checkpoint:
        status = f"**Done.** {u.message} It is now in every model list."
    return _progress_html(u), loss, recon, prior, live, status


PRIOR_CHOICES = [("N(0, I), the standard VAE", 0), ("learnt: a mixture of 10 Gaussians", 10),
                 ("learnt: a mixture of 100 Gaussians", 100)]
PRIOR_INFO = "A learnt prior follows the codes, so more samples read as digits."


@friendly
def train(model="vae", dataset="mnist-10k", latent_dim=2, beta=1.0, epochs=5, batch_size=128,
          lr=0.001, name="", prior=0):
    """/train (streaming): start a run and yield progress, loss curves, previews and the live map."""
    policy = jobs.training_policy()
    if not policy["enabled"]:
        raise ValueError("Training is turned off on this server.")
    spec = {"model": model, "dataset": dataset, "latent_dim": latent_dim,
            "beta": None if model == "ae" else beta, "prior_components": None if model == "ae" else prior,
            "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "name": (name or "").strip() or _auto_name(str(model))}
    job = jobs.TRAINER.start(spec)
    yield (_progress_html(None, "Starting…"), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
           f"Training **{spec['name']}**…", job)
    finished = False
    try:
        for u in jobs.TRAINER.events(job):
            if u.done:
                finished = True
                yield (*_train_view(u), None)
                return
            yield (*_train_view(u), job)
    finally:
        if not finished:  # the browser went away: free the server for someone else
            try:
                jobs.TRAINER.stop(job)
            except ValueError:
                pass


def refresh_all(rec, cmp, map_, smp) -> tuple:
    """After a run: every model list gets the new checkpoint (the selections stay)."""
    return refresh_checkpoint(rec), refresh_compare(cmp), refresh_checkpoint(map_), refresh_checkpoint(smp)


@friendly
def stop_training(job):
    if not job:
        return "Nothing to stop: no run of yours is going."
    stopped = jobs.TRAINER.stop(job)
    if not stopped:
        return "The run has already ended."
    return "Stopping after the current batch; the best finished epoch is saved."


def train_status():
    s = jobs.TRAINER.status()
    if not s["busy"]:
        return "No training run is going: you can start one."
    return (f"**Busy:** the trainer is working on **{s['name']}** ({100 * s['fraction']:.0f}% done, about "
            f"{_duration(s['eta_s'])} left). You can start a run once it ends.")


def _on_model_kind(kind):
    vae = kind != "ae"
    return (gr.update(interactive=vae, info="β weighs the KL term (β-VAE)." if vae else "A plain AE has no KL term."),
            gr.update(interactive=vae, info=PRIOR_INFO if vae else "A plain AE has no prior."))


# ---------------------------------------------------------------------------------- health


def health() -> dict:
    """/health: version, device, loaded checkpoints; cheap (nothing is loaded or computed)."""
    return {**service.health(), "app": "vaedemo", "ui_version": __version__}


# ---------------------------------------------------------------------------------- layout


CSS = """
.digit img, .digit canvas, img.digit { image-rendering: pixelated; image-rendering: crisp-edges; }
.digit img { object-fit: contain; }
.vd-progress { height: 14px; background: var(--neutral-200); border-radius: 7px; overflow: hidden; margin: 4px 0; }
.vd-bar { height: 100%; background: var(--color-accent); transition: width 0.4s; }
.vd-progress-text { font-size: 0.95rem; }
#vd-header h1 { margin-bottom: 0; }
#vd-header p { margin-top: 0.2rem; color: var(--body-text-color-subdued); }
.vd-hint { color: var(--body-text-color-subdued); font-size: 0.9rem; }
.vd-caption p { margin: 0.4rem 0 -0.3rem 0; }
"""

# Gradio's sketchpad starts with no tool selected; choose the brush so a visitor can draw at once.
PAGE_JS = """
() => {
  let tries = 0;
  const timer = setInterval(() => {
    const brush = document.querySelector('#rec-sketch button[aria-label="Brush"]');
    if (brush) brush.click();
    if (brush || ++tries > 150) clearInterval(timer);
  }, 200);
}
"""

HEADER = """
# vaedemo: what does an autoencoder learn?
Draw or upload a digit and watch a model squeeze it into a few numbers and rebuild it. Compare a plain
autoencoder with a VAE, explore the latent map, sample new digits, or train your own model.
"""


def _read_static(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def _checkpoint_dropdown(choices, label="Model", info=None, elem_id=None, value=None):
    # allow_custom_value: Gradio checks a value against the choices known when the page was built,
    # so without it an API client could not use a checkpoint trained since; the service checks names.
    return gr.Dropdown(choices=choices, value=value if value is not None else _pick(None, choices), label=label,
                       info=info, elem_id=elem_id, interactive=True, allow_custom_value=True)


def _out_image(label, elem_id=None, height=None, **kw):
    kw.setdefault("buttons", ["download"])
    return PictureOut(label=label, type="pil", format="png", interactive=False, elem_id=elem_id,
                      elem_classes=["digit"], height=height, **kw)


def _strip_image(caption, elem_id=None, **kw):
    """A wide, short image (a row of digits) with its caption above it: a label inside would hide the digits."""
    gr.Markdown(f"**{caption}**", elem_classes=["vd-caption"])
    kw.setdefault("buttons", [])  # a download badge would cover the last digit
    return _out_image(caption, elem_id, show_label=False, **kw)


def _digit_picker(image_label: str, index_label: str, index: int):
    """An optional upload, a dataset index, and a button that copies the Reconstruct tab's digit."""
    image = DigitImage(label=f"{image_label} (optional upload)", type="filepath", sources=["upload", "clipboard"],
                       format="png", height=160)
    number = NumberBox(value=index, label=index_label, precision=None)
    here = gr.Button("Use my Reconstruct digit", size="sm")
    return image, number, here


def build_demo() -> gr.Blocks:
    """The Blocks UI (no server); ``build_app`` mounts it."""
    choices = _choices()
    policy = jobs.training_policy()
    private = {"api_visibility": "private"}

    with gr.Blocks(title="vaedemo: autoencoders and VAEs on MNIST", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as demo:
        here = gr.State(None)  # this user's last Reconstruct input, (28, 28) float
        map_key = gr.State(None)  # what the latent map shows: checkpoint, method, n, here
        job = gr.State(None)  # this user's training job id

        gr.Markdown(HEADER, elem_id="vd-header")
        with gr.Tabs(selected="reconstruct"):
            # ---------------------------------------------------------------- Reconstruct
            with gr.Tab("Reconstruct", id="reconstruct", elem_id="tab-reconstruct") as tab_rec:
                with gr.Row():
                    rec_ck = _checkpoint_dropdown(choices, "Model", "Which trained model encodes and decodes your "
                                                  "digit.", elem_id="rec-checkpoint")
                    cmp_ck = _checkpoint_dropdown([NONE_CHOICE, *choices], "Compare with",
                                                  "Pick a second model (e.g. an AE next to a VAE) to see both on "
                                                  "the same input.", elem_id="rec-compare", value="")
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=300):
                        gr.Markdown("### 1 · Give a digit")
                        with gr.Tabs():
                            with gr.Tab("Draw", id="draw"):
                                sketch = gr.Sketchpad(label="Draw a digit (one stroke or several)", type="numpy",
                                                      image_mode="RGBA", format="png", canvas_size=(280, 280),
                                                      brush=gr.Brush(default_size=18, colors=["#000000"],
                                                                     color_mode="fixed"),
                                                      layers=False, transforms=(), elem_id="rec-sketch", height=360)
                                gr.Markdown("Draw with the mouse or a finger; the result updates after each stroke.",
                                            elem_classes=["vd-hint"])
                            with gr.Tab("Upload", id="upload"):
                                upload = DigitImage(label="Upload or paste a picture of a digit", type="filepath",
                                                    sources=["upload", "clipboard"], format="png",
                                                    elem_id="rec-upload", height=300)
                            with gr.Tab("Examples", id="examples"):
                                examples = gr.Gallery(value=example_gallery(), label="Click a digit from the dataset",
                                                      columns=5, height="auto", allow_preview=False,
                                                      elem_id="rec-examples", elem_classes=["digit"], format="png")
                    with gr.Column(scale=3, min_width=400):
                        gr.Markdown("### 2 · What the model makes of it")
                        with gr.Row():
                            in_img = _out_image("Input (28×28)", "rec-input")
                            out_img = _out_image("Reconstruction", "rec-output")
                            cmp_img = _out_image("The compared model", "rec-compare-output", visible=False)
                            err_img = _out_image("Error map", "rec-error")
                        gr.Markdown("Error map: red where the reconstruction adds ink, blue where it misses ink.",
                                    elem_classes=["vd-hint"])
                        with gr.Column(visible=False) as samples_col:
                            gr.Markdown("**Other decodes of z ~ q(z|x)**: how unsure the VAE is about this digit.")
                            samples_img = _out_image("Decodes of z ~ q(z|x)", "rec-samples", show_label=False,
                                                     buttons=[])
                        with gr.Row(equal_height=False):
                            with gr.Column(scale=3, min_width=320):
                                scores = gr.Markdown(label="Scores", elem_id="rec-scores")
                            with gr.Column(scale=2, min_width=240):
                                code_plot = gr.Plot(label="The latent code", elem_id="rec-code")
                        neighbours = GalleryOut(label="The 5 nearest dataset digits in latent space "
                                                      "(label · distance)", columns=5, rows=1, height=170,
                                                allow_preview=False, elem_classes=["digit"],
                                                elem_id="rec-neighbours", format="png")
                rec_outputs = [in_img, out_img, cmp_img, err_img, samples_col, samples_img, scores, code_plot,
                               neighbours, here]
                assert len(rec_outputs) == N_REC_OUTPUTS

            # ---------------------------------------------------------------- Latent map
            with gr.Tab("Latent map", id="map", elem_id="tab-map") as tab_map:
                with gr.Row():
                    map_ck = _checkpoint_dropdown(choices, elem_id="map-checkpoint")
                    map_method = gr.Radio([("PCA (instant)", "pca"), ("t-SNE (slower the first time)", "tsne")],
                                          value="pca", label="Projection to 2-D", elem_id="map-method")
                    map_n = NumberSlider(500, service.MAP_SIZE, value=MAP_DEFAULT_N, step=500,
                                         label="Digits on the map", elem_id="map-n")
                    map_btn = gr.Button("Draw map", variant="primary", elem_id="map-draw", scale=0)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        lmap = gr.HTML(value=None, label="Map data (JSON)",
                                       html_template=_read_static("latent_map.html"),
                                       css_template=_read_static("latent_map.css"),
                                       js_on_load=_read_static("latent_map.js"),
                                       head=f'<script src="{STATIC_ROUTE}/plotly.min.js"></script>',
                                       elem_id="latent-map", min_height=600, apply_default_css=False)
                    with gr.Column(scale=1, min_width=260):
                        map_note = gr.Markdown("Hover a point to see its digit. Click a point to see its "
                                               "reconstruction; click empty space to decode that place.",
                                               label="About this map", elem_id="map-note")
                        with gr.Row():
                            pick_orig = _out_image("Original: click a point", "map-original", height=180)
                            pick_recon = _out_image("Reconstruction", "map-recon", height=180)
                        decoded = _out_image("Decoded: click empty space", "map-decoded", height=180)
                        pick_md = gr.Markdown(label="What you clicked", elem_id="map-picked")
                manifold = _out_image("Decoded grid over the 2-D latent plane", "map-manifold", visible=False,
                                      height=460)

            # ---------------------------------------------------------------- Sample
            with gr.Tab("Sample", id="sample", elem_id="tab-sample") as tab_sample:
                with gr.Row():
                    smp_ck = _checkpoint_dropdown(choices, elem_id="sample-checkpoint")
                    smp_note = gr.Markdown(label="How these are sampled", elem_classes=["vd-hint"])
                with gr.Tabs():
                    with gr.Tab("From the prior"):
                        with gr.Row():
                            count = NumberSlider(1, 256, value=64, step=1, label="How many")
                            temperature = NumberSlider(0.1, 3.0, value=1.0, step=0.1, label="Temperature",
                                                       info="Scales the prior's spread: below 1 safer, above 1 wilder.")
                            seed = NumberBox(value=0, label="Seed", precision=None, minimum=0, elem_id="sample-seed",
                                             info="Same seed, same grid.")
                            digit = gr.Dropdown([("any (0-9 in turn)", "any"), *[(str(d), str(d)) for d in range(10)]],
                                                value="any", label="Digit (CVAE)", visible=False, filterable=False)
                        smp_btn = gr.Button("Sample", variant="primary", elem_id="sample-go")
                        with gr.Row():
                            smp_grid = _out_image("Samples", "sample-grid")
                        smp_file = gr.DownloadButton("Download PNG grid", visible=False, elem_id="sample-download")
                    with gr.Tab("Interpolate"):
                        gr.Markdown("Two digits: upload one, or type its number in the dataset (0-9999). "
                                    "Straight (lerp) and spherical (slerp) paths between their codes.",
                                    elem_classes=["vd-hint"])
                        with gr.Row():
                            with gr.Column():
                                a_img, a_idx, a_here = _digit_picker("Start digit", "…or start at dataset digit #", 1)
                            with gr.Column():
                                b_img, b_idx, b_here = _digit_picker("End digit", "…or end at dataset digit #", 7)
                            steps = NumberSlider(2, 64, value=10, step=1, label="Steps")
                        int_btn = gr.Button("Interpolate", variant="primary", elem_id="int-go")
                        lerp_img = _strip_image("Straight line (lerp)", "int-lerp")
                        slerp_img = _strip_image("Great circle (slerp): keeps ‖z‖ where the prior puts its mass",
                                                 "int-slerp")
                        with gr.Row():
                            norm_plot = gr.Plot(label="‖z‖ along each path", elem_id="int-norms")
                            int_gif = gr.DownloadButton("Download animated GIF", visible=False)
                    with gr.Tab("Traverse"):
                        gr.Markdown("Move one latent dimension at a time over ±span σ, keeping the others at the "
                                    "digit's own code. Dimensions are listed by how much the model uses them.",
                                    elem_classes=["vd-hint"])
                        with gr.Row():
                            with gr.Column():
                                t_img, t_idx, t_here = _digit_picker("Digit", "…or dataset digit #", 0)
                            with gr.Column(scale=2):
                                dims = gr.Dropdown(label="Dimensions (most used first)", choices=[], value=[],
                                                   multiselect=True, allow_custom_value=True,
                                                   info="Empty: the 8 most used.")
                                with gr.Row():
                                    t_steps = NumberSlider(3, 31, value=9, step=2, label="Steps")
                                    span = NumberSlider(0.5, 5.0, value=3.0, step=0.5, label="Span (σ)")
                        trv_btn = gr.Button("Traverse", variant="primary", elem_id="trv-go")
                        trv_img = _strip_image("Traversal: one row per dimension", "trv-grid")
                        trv_md = gr.Markdown(label="What the rows are", elem_id="trv-text")
                        trv_gif = gr.DownloadButton("Download animated GIF", visible=False)
                        kl_plot = gr.Plot(label="How much each dimension is used", elem_id="trv-kl")
                    with gr.Tab("Export"):
                        gr.Markdown("Latent codes for the [TensorFlow Embedding Projector]"
                                    "(https://projector.tensorflow.org): there, press *Load* and choose "
                                    "`tensors.tsv` and `metadata.tsv`. The zip also holds "
                                    "`sprite.png` and `projector_config.json` for hosting the bundle yourself.",
                                    elem_classes=["vd-hint"])
                        exp_n = NumberSlider(500, service.MAP_SIZE, value=2000, step=500, label="Digits to export")
                        exp_btn = gr.Button("Export codes", variant="primary")
                        exp_files = gr.File(label="Projector files", file_count="multiple", interactive=False)

            # ---------------------------------------------------------------- Train
            with gr.Tab("Train", id="train", elem_id="tab-train") as tab_train:
                if not policy["enabled"]:
                    gr.Markdown("### Training is turned off on this server\nThis public demo only runs the models it "
                                "ships with, so that one visitor's run cannot slow everyone down. To train your own, "
                                "run the app on your machine (`make run`) or use `python -m vaedemo train`.",
                                elem_id="train-off")
                else:
                    caps = [f"at most {policy['max_epochs']} epochs"]
                    if policy["max_train_items"]:
                        caps.append(f"{policy['max_train_items']:,} training digits")
                    if policy["max_train_seconds"]:
                        caps.append(f"{_duration(policy['max_train_seconds'])} per run")
                    busy_md = gr.Markdown(train_status(), elem_id="train-busy")
                    with gr.Row(equal_height=False):
                        with gr.Column(scale=1, min_width=280):
                            t_model = gr.Dropdown(MODEL_KINDS, value="vae", label="Model", filterable=False)
                            t_data = gr.Dropdown(list(DATASETS), value="mnist-10k", label="Dataset",
                                                 info="mnist-10k ships with the app; the others download once.",
                                                 filterable=False)
                            t_latent = NumberBox(value=2, label="Latent size", precision=None, minimum=1, maximum=1024,
                                                 info="2 draws a map you can read directly, plus a manifold grid.")
                            t_beta = NumberBox(value=1.0, label="β", precision=None, minimum=0,
                                               info="β weighs the KL term (β-VAE).")
                            t_prior_kind = gr.Dropdown(PRIOR_CHOICES, value=0, label="Prior", info=PRIOR_INFO,
                                                  filterable=False, elem_id="train-prior-kind")
                            t_epochs = NumberSlider(1, policy["max_epochs"], value=min(5, policy["max_epochs"]),
                                                    step=1, label="Epochs", elem_id="train-epochs")
                            t_batch = gr.Dropdown([32, 64, 128, 256, 512], value=128, label="Batch size",
                                                  filterable=False)
                            t_lr = NumberBox(value=0.001, label="Learning rate", precision=None, minimum=0)
                            t_name = gr.Textbox(value="", label="Name", placeholder="left empty: vae-<date>-<time>",
                                                max_length=64, elem_id="train-name")
                            with gr.Row():
                                t_start = gr.Button("Start", variant="primary", elem_id="train-start")
                                t_stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
                            gr.Markdown("This server allows " + ", ".join(caps) + "; one run at a time.",
                                        elem_classes=["vd-hint"])
                        with gr.Column(scale=3):
                            t_progress = gr.HTML(_progress_html(None), label="Progress", elem_id="train-progress",
                                                 js_on_load=None)
                            t_status = gr.Markdown(label="Status", elem_id="train-status")
                            with gr.Row():
                                t_loss = gr.Plot(plots.loss_curves([]), label="Loss", elem_id="train-loss")
                                t_live = gr.Plot(label="Live latent map (fixed PCA axes)", elem_id="train-map")
                            with gr.Row():
                                with gr.Column():
                                    t_recon = _strip_image("Validation digits (top) and their reconstructions "
                                                           "(bottom)", "train-recon")
                                with gr.Column():
                                    t_prior = _strip_image("Samples from the prior", "train-prior")

            # ---------------------------------------------------------------- About
            with gr.Tab("About", id="about", elem_id="tab-about"):
                with gr.Tabs():
                    with gr.Tab("English"):
                        gr.Markdown(_read_static("about_en.md"))
                    with gr.Tab("한국어"):
                        gr.Markdown(_read_static("about_ko.md"))
                with gr.Accordion("Server status", open=False):
                    health_btn = gr.Button("Check", size="sm")
                    health_json = gr.JSON(label="/health")
                broken = service.broken_checkpoints()
                if broken:
                    gr.Markdown("**Checkpoints that could not be loaded:**\n\n"
                                + "\n".join(f"- `{n}`: {why}" for n, why in broken))

        # ------------------------------------------------------------------ events: Reconstruct
        rec_inputs = [rec_ck, cmp_ck]
        upload.upload(reconstruct, [upload, *rec_inputs], rec_outputs, api_name="reconstruct",
                      concurrency_limit=CONCURRENCY)
        sketch.change(reconstruct_sketch, [sketch, *rec_inputs], rec_outputs, trigger_mode="always_last",
                      show_progress="hidden", **private)
        examples.select(reconstruct_example, rec_inputs, rec_outputs, **private)
        rec_ck.input(reconstruct_again, [here, *rec_inputs], rec_outputs, **private)
        cmp_ck.input(reconstruct_again, [here, *rec_inputs], rec_outputs, **private)
        tab_rec.select(refresh_checkpoint, rec_ck, rec_ck, show_progress="hidden", **private).then(
            refresh_compare, cmp_ck, cmp_ck, show_progress="hidden", **private)

        # ------------------------------------------------------------------ events: Latent map
        map_inputs = [map_ck, map_method, map_n, here]
        map_outputs = [lmap, manifold, map_note, map_key]
        map_btn.click(latent_map, map_inputs, map_outputs, api_name="latent_map")
        tab_map.select(refresh_checkpoint, map_ck, map_ck, show_progress="hidden", **private).then(
            latent_map_auto, [*map_inputs, map_key], map_outputs, **private)
        map_ck.input(latent_map, map_inputs, map_outputs, **private)
        map_method.input(latent_map, map_inputs, map_outputs, **private)
        lmap.point_click(map_point, map_key, [pick_orig, pick_recon, pick_md], show_progress="hidden", **private)
        lmap.space_click(map_space, map_key, [decoded, pick_md], show_progress="hidden", **private)

        # ------------------------------------------------------------------ events: Sample
        smp_btn.click(sample, [smp_ck, count, temperature, seed, digit], [smp_grid, smp_file, smp_note],
                      api_name="sample")
        smp_controls = [digit, smp_note, dims, kl_plot]
        smp_ck.input(sample_controls, smp_ck, smp_controls, show_progress="hidden", **private)
        tab_sample.select(refresh_checkpoint, smp_ck, smp_ck, show_progress="hidden", **private).then(
            sample_controls, smp_ck, smp_controls, show_progress="hidden", **private).then(
            sample_first_visit, [smp_ck, count, temperature, seed, digit, smp_grid], [smp_grid, smp_file, smp_note],
            **private)
        int_btn.click(interpolate, [smp_ck, a_img, b_img, a_idx, b_idx, steps],
                      [lerp_img, slerp_img, norm_plot, int_gif], api_name="interpolate")
        a_here.click(_endpoint_from_here, here, a_img, **private)
        b_here.click(_endpoint_from_here, here, b_img, **private)
        t_here.click(_endpoint_from_here, here, t_img, **private)
        trv_btn.click(traverse, [smp_ck, t_img, t_idx, dims, t_steps, span], [trv_img, trv_gif, trv_md],
                      api_name="traverse")
        exp_btn.click(export_projector, [smp_ck, exp_n], exp_files, api_name="projector_export",
                      concurrency_limit=1)

        # ------------------------------------------------------------------ events: Train
        if policy["enabled"]:
            all_dropdowns = [rec_ck, cmp_ck, map_ck, smp_ck]
            t_model.change(_on_model_kind, t_model, [t_beta, t_prior_kind], show_progress="hidden", **private)
            t_start.click(train, [t_model, t_data, t_latent, t_beta, t_epochs, t_batch, t_lr, t_name, t_prior_kind],
                          [t_progress, t_loss, t_recon, t_prior, t_live, t_status, job],
                          api_name="train", concurrency_limit=4).then(
                refresh_all, [rec_ck, cmp_ck, map_ck, smp_ck], all_dropdowns, show_progress="hidden", **private)
            t_stop.click(stop_training, job, t_status, concurrency_limit=None, **private)
            tab_train.select(train_status, None, busy_md, show_progress="hidden", **private)

        # ------------------------------------------------------------------ page load, health
        health_btn.click(health, None, health_json, api_name="health", queue=False)
        demo.load(_on_page_load, None, [rec_ck, cmp_ck, map_ck, smp_ck, *rec_outputs], **private)

    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


@friendly
def _on_page_load():
    """Fresh model lists for every visitor, and a first reconstruction so the page is not empty."""
    choices = _choices()
    ck = _pick(None, choices)
    lists = (gr.update(choices=choices, value=ck), gr.update(choices=[NONE_CHOICE, *choices], value=""),
             gr.update(choices=choices, value=_pick(None, choices)), gr.update(choices=choices, value=ck))
    if not ck:
        empty = [gr.skip() for _ in range(N_REC_OUTPUTS)]
        empty[6] = ("**No trained models yet.** Train one in the Train tab, or put checkpoint folders in "
                    "`checkpoints/` (`make checkpoints` trains the standard set).")
        return (*lists, *empty)
    view = _reconstruct_view(service.digit_input(example_indices()[0]), ck, "")
    return (*lists, *view[:-1], gr.skip())  # an example is not "your digit": leave the state empty


# ---------------------------------------------------------------------------------- server


def build_app(demo: gr.Blocks | None = None) -> fastapi.FastAPI:
    """A FastAPI app serving plotly.js and the digit sprite from this package, with the Blocks mounted at /."""
    # Pillow warns (only) for images between 1x and 2x Image.MAX_IMAGE_PIXELS; make that an error wherever
    # an image is decoded in this process, not only inside vaedemo.images.
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    demo = demo or build_demo()
    threading.Thread(target=_sprite_png, name="vaedemo-sprite", daemon=True).start()  # ready before the first hover
    app = fastapi.FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    cache = {"Cache-Control": "public, max-age=86400"}

    @app.get(f"/{STATIC_ROUTE}/plotly.min.js", include_in_schema=False)
    def plotly_js():
        return FileResponse(PLOTLY_JS, media_type="text/javascript", headers=cache)

    @app.get(f"/{STATIC_ROUTE}/digits.png", include_in_schema=False)
    def digit_sprite():
        return Response(_sprite_png(), media_type="image/png", headers=cache)

    app = gr.mount_gradio_app(
        app, demo, path="/",
        max_file_size=MAX_UPLOAD_BYTES,
        enable_monitoring=False,
        show_error=False,  # only gr.Error sentences reach the browser, never exception text
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=gr.themes.Soft(primary_hue="indigo"),
        css=CSS,
        js=PAGE_JS,
    )
    # Gradio accepts an input file only from its upload folder once the Blocks count as launched
    # (processing_utils._check_allowed); demo.launch() sets the flag, mount_gradio_app does not. Without
    # it an API client could name any file on the server, e.g. {"path": "/etc/passwd"}, as its "upload".
    demo.has_launched = True
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
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host, port = server_address()
    app = build_app()
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    print(f"vaedemo {__version__}: open http://{shown}:{port}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
