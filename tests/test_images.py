"""Tests for vaedemo.images: awkward real-world uploads built from real MNIST digits."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaedemo import images
from vaedemo.images import MAX_UPLOAD_BYTES, BlankImageError, load_image, preprocess_image, to_pil

ASSET = Path(__file__).resolve().parents[1] / "vaedemo" / "assets" / "mnist10k.npz"
NOT_IMAGE = "not an image we can read"
BLANK = "looks blank"


@pytest.fixture(scope="module")
def mnist():
    with np.load(ASSET) as data:
        return data["x"], data["y"]


@pytest.fixture(scope="module")
def digit(mnist):
    """An asymmetric digit (a 7), so rotation or mirroring errors show up clearly."""
    x, y = mnist
    return x[int(np.flatnonzero(y == 7)[0])]


@pytest.fixture(scope="module")
def ref(digit):
    return preprocess_image(digit)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def check(out: np.ndarray, ref: np.ndarray, min_corr: float = 0.85) -> float:
    """Shape, dtype, range, MNIST centring, and closeness to the reference digit."""
    assert out.shape == (28, 28)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.max() > 0.5
    ys, xs = np.indices(out.shape)
    cy, cx = (ys * out).sum() / out.sum(), (xs * out).sum() / out.sum()
    assert abs(cy - 14.0) <= 1.0 and abs(cx - 14.0) <= 1.0, (cy, cx)
    c = corr(out, ref)
    assert c >= min_corr, c
    return c


def big(d: np.ndarray, size: int = 400) -> np.ndarray:
    """The 28-px digit upscaled smoothly: uint8, white ink on black."""
    return np.asarray(Image.fromarray(d).resize((size, size), Image.Resampling.BICUBIC))


def on_paper(d: np.ndarray) -> Image.Image:
    """Black ink on white paper, 400 px."""
    return Image.fromarray(255 - big(d))


# ---------------------------------------------------------------- good inputs


def test_plain_mnist_digit_stays_itself(mnist):
    x, _ = mnist
    cs = [corr(preprocess_image(x[i]), x[i] / 255.0) for i in range(20)]
    assert min(cs) >= 0.9, cs


@pytest.mark.parametrize(
    "convert",
    [
        lambda d: d.astype(np.float32) / 255,  # float [0, 1]
        lambda d: d.astype(np.float64),  # float [0, 255]
        lambda d: d.astype(np.uint16) * 257,  # 16-bit
        lambda d: d > 127,  # bool
        lambda d: d[:, :, None],  # (H, W, 1)
        lambda d: np.repeat(d[:, :, None], 3, axis=2),  # RGB
        lambda d: np.dstack([d, d, d, np.full_like(d, 255)]),  # opaque RGBA
        lambda d: Image.fromarray(d),  # PIL
    ],
    ids=["float01", "float255", "uint16", "bool", "hw1", "rgb", "rgba", "pil"],
)
def test_array_kinds(digit, ref, convert):
    check(preprocess_image(convert(digit)), ref, 0.9)


def test_black_on_white_png_path_str_and_bytes(digit, ref, tmp_path):
    path = tmp_path / "digit.png"
    on_paper(digit).save(path)
    for source in (path, str(path), path.read_bytes()):
        check(preprocess_image(source), ref, 0.9)


def test_off_centre_on_huge_canvas_png_and_jpeg(digit, ref, tmp_path):
    canvas = Image.new("L", (3000, 2000), 255)
    canvas.paste(on_paper(digit).resize((300, 300)), (2400, 150))
    canvas.save(tmp_path / "big.png")
    canvas.save(tmp_path / "big.jpg", quality=90)
    check(preprocess_image(tmp_path / "big.png"), ref, 0.9)
    check(preprocess_image(tmp_path / "big.jpg"), ref, 0.9)


def test_grey_noisy_paper(digit, ref, tmp_path):
    rng = np.random.default_rng(0)
    page = np.full((700, 900), 0.72)
    page[150:450, 80:380] -= 0.6 * big(digit, 300) / 255.0  # grey pencil on grey paper
    page += rng.normal(0, 0.05, page.shape)
    Image.fromarray(np.clip(page * 255, 0, 255).astype(np.uint8)).save(tmp_path / "noisy.png")
    check(preprocess_image(tmp_path / "noisy.png"), ref, 0.85)


def test_16bit_png(digit, ref, tmp_path):
    arr = (65535 - big(digit).astype(np.uint16) * 257).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    check(preprocess_image(tmp_path / "deep.png"), ref, 0.9)


def test_cmyk_jpeg(digit, ref, tmp_path):
    on_paper(digit).convert("RGB").convert("CMYK").save(tmp_path / "cmyk.jpg", quality=90)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    check(preprocess_image(tmp_path / "cmyk.jpg"), ref, 0.9)


def test_palette_gif_with_transparency(digit, ref, tmp_path):
    idx = (big(digit) > 100).astype(np.uint8)  # 0 = clear background, 1 = black ink
    gif = Image.fromarray(idx, "P")
    # Same colour for background and ink (as Sketchpad does): only the transparency tells them apart.
    gif.putpalette([0, 0, 0, 0, 0, 0] + [0] * 762)
    gif.save(tmp_path / "t.gif", transparency=0, optimize=False)
    saved = Image.open(tmp_path / "t.gif")
    assert saved.mode == "P" and saved.info.get("transparency") == 0 and len(set(np.asarray(saved).ravel())) == 2
    check(preprocess_image(tmp_path / "t.gif"), ref, 0.85)


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (200, 30, 30)], ids=["black", "white", "red"])
def test_ink_on_transparent_canvas(digit, ref, tmp_path, colour):
    """Gradio's Sketchpad: coloured strokes with alpha on a fully transparent canvas."""
    alpha = big(digit, 500)
    rgba = np.zeros((500, 500, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = alpha
    Image.fromarray(rgba, "RGBA").save(tmp_path / "sketch.png")
    check(preprocess_image(tmp_path / "sketch.png"), ref, 0.9)
    check(preprocess_image(rgba), ref, 0.9)


def test_la_and_mode_1(digit, ref, tmp_path):
    paper = on_paper(digit)
    Image.merge("LA", [paper, Image.new("L", paper.size, 255)]).save(tmp_path / "la.png")
    paper.convert("1").save(tmp_path / "one.png")
    check(preprocess_image(tmp_path / "la.png"), ref, 0.9)
    check(preprocess_image(tmp_path / "one.png"), ref, 0.85)


def test_exif_rotated_phone_photo(digit, ref, tmp_path):
    # Stored turned 90 degrees anticlockwise; orientation 6 tells viewers to turn it back.
    stored = on_paper(digit).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[274] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=90)
    stored.save(tmp_path / "no_exif.jpg", quality=90)
    upright = check(preprocess_image(tmp_path / "phone.jpg"), ref, 0.9)
    sideways = corr(preprocess_image(tmp_path / "no_exif.jpg"), ref)
    assert upright > sideways + 0.4, (upright, sideways)


def test_animated_gif_uses_first_frame(mnist, digit, ref, tmp_path):
    x, y = mnist
    other = x[int(np.flatnonzero(y == 0)[0])]
    frames = [on_paper(digit).convert("P"), on_paper(other).convert("P")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    out = preprocess_image(tmp_path / "anim.gif")
    first = check(out, ref, 0.9)
    assert first > corr(out, preprocess_image(other)) + 0.3


def test_gradio_editor_dict(digit, ref, tmp_path):
    white = np.full((400, 400, 4), 255, np.uint8)
    strokes = np.zeros((400, 400, 4), np.uint8)
    strokes[..., 3] = big(digit)  # black ink, alpha = stroke
    layers_only = {"background": white, "layers": [strokes], "composite": None}
    no_background = {"background": None, "layers": [strokes], "composite": None}
    Image.fromarray(strokes, "RGBA").save(tmp_path / "composite.png")
    with_path = {"background": None, "layers": [], "composite": str(tmp_path / "composite.png")}
    with_pil = {"background": white, "layers": [strokes], "composite": on_paper(digit)}
    for value in (layers_only, no_background, with_path, with_pil):
        check(preprocess_image(value), ref, 0.9)


def test_load_image_returns_upright_first_frame(digit, tmp_path):
    on_paper(digit).save(tmp_path / "d.png")
    img = load_image(tmp_path / "d.png")
    assert isinstance(img, Image.Image) and img.size == (400, 400)


# ---------------------------------------------------------------- bad inputs


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size (a decompression bomb) without the memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [20000, 8000], ids=["over2x_error", "over1x_warning"])
def test_decompression_bomb(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    assert path.stat().st_size < 1000
    with pytest.raises(ValueError, match="too large in pixels.*50 million"):
        preprocess_image(path)


def test_random_bytes_named_png(tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(np.random.default_rng(1).bytes(5000))
    with pytest.raises(ValueError, match=NOT_IMAGE):
        preprocess_image(path)
    with pytest.raises(ValueError, match=NOT_IMAGE):
        preprocess_image(path.read_bytes())


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_file(digit, tmp_path, ext):
    buf = io.BytesIO()
    on_paper(digit).convert("RGB").save(buf, format="PNG" if ext == "png" else "JPEG")
    data = buf.getvalue()
    path = tmp_path / f"half.{ext}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{NOT_IMAGE}.*truncated"):
        preprocess_image(path)


def test_svg(tmp_path):
    path = tmp_path / "d.svg"
    path.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><text>7</text></svg>')
    with pytest.raises(ValueError, match=f"{NOT_IMAGE}.*SVG"):
        preprocess_image(path)


def test_missing_and_empty_file(tmp_path):
    with pytest.raises(ValueError, match=NOT_IMAGE):
        preprocess_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match=NOT_IMAGE):
        preprocess_image(tmp_path / "empty.png")


def test_degenerate_shapes(tmp_path):
    Image.new("L", (1, 1), 0).save(tmp_path / "dot.png")
    for bad in (tmp_path / "dot.png", np.zeros((1, 5000), np.uint8), np.full((5000, 1), 255, np.uint8)):
        with pytest.raises(ValueError, match="too small or too thin"):
            preprocess_image(bad)
    with pytest.raises(ValueError, match="empty"):
        preprocess_image(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="shape"):
        preprocess_image(np.zeros((28, 28, 2)))


def test_blank_canvases(tmp_path):
    Image.new("RGB", (300, 300), "white").save(tmp_path / "white.png")
    Image.new("RGBA", (300, 300), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    rng = np.random.default_rng(2)
    paper = np.clip(rng.normal(180, 12, (400, 400)), 0, 255).astype(np.uint8)
    blanks = [
        tmp_path / "white.png",
        tmp_path / "clear.png",
        paper,  # grey noisy paper with nothing written on it
        np.zeros((28, 28), np.uint8),
        {"background": None, "layers": [], "composite": None},
        None,
    ]
    for blank in blanks:
        # its own type, so the sketchpad can ignore a cleared canvas without reading the message
        with pytest.raises(BlankImageError, match=BLANK):
            preprocess_image(blank)


def test_file_over_size_limit(digit, tmp_path, monkeypatch):
    assert MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    on_paper(digit).save(tmp_path / "d.png")
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 1000)
    with pytest.raises(ValueError, match=r"MB, larger than the .* MB limit"):
        preprocess_image(tmp_path / "d.png")
    with pytest.raises(ValueError, match="MB limit"):
        preprocess_image((tmp_path / "d.png").read_bytes())


def test_unsupported_type():
    with pytest.raises(ValueError, match="object"):
        preprocess_image(object())
    with pytest.raises(ValueError, match="int"):
        preprocess_image(42)


# ---------------------------------------------------------------- to_pil


def test_to_pil_round_trip_and_scale(ref):
    img = to_pil(ref)
    assert img.mode == "L" and img.size == (28, 28)
    assert np.abs(np.asarray(img) / 255.0 - ref).max() <= 0.5 / 255 + 1e-6
    big_img = to_pil(ref, scale=10)
    assert big_img.size == (280, 280)
    arr = np.asarray(big_img)
    assert (arr[::10, ::10] == np.asarray(img)).all()
    assert (arr[5::10, 9::10] == np.asarray(img)).all()  # nearest neighbour: crisp blocks
    with pytest.raises(ValueError):
        to_pil(np.zeros((2, 2, 2)))
