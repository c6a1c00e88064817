"""images.py: every PIL mode decodes to upright RGB and the pipeline scores exactly like an
independent, straightforward implementation of the JoyQuality reference recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from joyq_studio import images
from joyq_studio.demo import draw_scene
from joyq_studio.images import ImageError, load_rgb
from joyq_studio.model import tiny_model
from joyq_studio.pixels import load_uint8, normalize
from joyq_studio.scoring import embed_paths

GREY = 128


# -- the reference, written from the recipe, sharing no code with joyq_studio.images -----------
def reference_pixels(path, size: int) -> torch.Tensor:
    """PIL open -> EXIF transpose -> first frame -> RGB (alpha over grey 128, 16 bit scaled)
    -> resize (S, S) BICUBIC -> float32 / 255 -> (x - 0.5) / 0.5, as [3, S, S]."""
    img = Image.open(path)
    img.seek(0)
    img = ImageOps.exif_transpose(img)
    if img.mode == "I;16":
        a = np.asarray(img).astype(np.float64) * (255.0 / 65535.0)
        img = Image.fromarray(np.round(a).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = np.asarray(img.convert("RGBA")).astype(np.float64)
        alpha = rgba[..., 3:] / 255.0
        rgb = rgba[..., :3] * alpha + GREY * (1.0 - alpha)
        img = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    img = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - 0.5) / 0.5
    return torch.from_numpy(x).permute(2, 0, 1)


def naive_pixels(path, size: int) -> torch.Tensor:
    """What a careless loader does: no EXIF, alpha dropped, 16 bit clipped by PIL."""
    img = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    x = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy((x - 0.5) / 0.5).permute(2, 0, 1)


def reference_scores(model, batch: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        pooled = model.tower(pixel_values=batch).pooler_output
        return model.head(pooled).squeeze(-1).numpy()


# -- test images of every mode --------------------------------------------------------------
def _scene(w: int, h: int, seed: int) -> Image.Image:
    return draw_scene(np.random.default_rng(seed), (w, h))


@pytest.fixture(scope="module")
def mode_files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("modes")
    files = {}

    # EXIF orientation 6 (rotate 90 degrees clockwise to display); landscape in the file.
    exif = Image.Exif()
    exif[0x0112] = 6
    _scene(160, 96, 1).save(d / "exif6.jpg", "JPEG", quality=95, exif=exif)
    files["exif6"] = d / "exif6.jpg"

    # RGBA: alpha ramps from 0 (left) to 255 (right).
    rgba = _scene(128, 96, 2).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 128).astype(np.uint8), (96, 1)), "L"))
    rgba.save(d / "rgba.png")
    files["rgba"] = d / "rgba.png"

    _scene(128, 128, 3).convert("CMYK").save(d / "cmyk.jpg", "JPEG", quality=95)
    files["cmyk"] = d / "cmyk.jpg"

    # 16-bit grey spanning the full 0..65535 range: clipping to 255 would turn it white.
    yy, xx = np.mgrid[0:96, 0:128]
    g16 = ((np.sin(xx / 7.0) * np.cos(yy / 5.0) + 1) / 2 * 65535).astype(np.uint16)
    Image.fromarray(g16).save(d / "gray16.png")
    files["gray16"] = d / "gray16.png"

    pal = _scene(128, 96, 4).quantize(16)
    pal.save(d / "palette.png", transparency=0)
    files["palette"] = d / "palette.png"

    la = _scene(96, 128, 5).convert("L")
    la.putalpha(Image.fromarray(np.tile(np.linspace(255, 0, 128).astype(np.uint8)[:, None], (1, 96)), "L"))
    la.save(d / "la.png")
    files["la"] = d / "la.png"

    frames = [_scene(96, 96, 10 + k).quantize(64) for k in range(3)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["gif"] = d / "anim.gif"

    _scene(200, 150, 6).save(d / "plain.jpg", "JPEG", quality=90)
    files["plain"] = d / "plain.jpg"
    return {k: str(v) for k, v in files.items()}


def test_files_really_have_the_modes_under_test(mode_files):
    expect = {
        "exif6": "RGB",
        "rgba": "RGBA",
        "cmyk": "CMYK",
        "gray16": "I;16",
        "palette": "P",
        "la": "LA",
        "gif": "P",
        "plain": "RGB",
    }
    for key, mode in expect.items():
        with Image.open(mode_files[key]) as img:
            assert img.mode == mode, key
    with Image.open(mode_files["exif6"]) as img:
        assert img.getexif()[0x0112] == 6
    with Image.open(mode_files["palette"]) as img:
        assert "transparency" in img.info
    with Image.open(mode_files["gif"]) as img:
        assert img.n_frames == 3


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


def test_pipeline_scores_equal_reference_for_every_mode(mode_files, tiny):
    keys = sorted(mode_files)
    paths = [mode_files[k] for k in keys]
    size = tiny.image_size
    ref_x = torch.stack([reference_pixels(p, size) for p in paths])
    ref = reference_scores(tiny, ref_x)

    direct = normalize(torch.stack([load_uint8(p, size) for p in paths]))
    assert torch.allclose(direct, ref_x, atol=1e-6)
    got_direct = reference_scores(tiny, direct)

    for workers in (0, 2):
        batches = list(embed_paths(tiny, paths, "cpu", batch_size=3, workers=workers))
        assert [b.start for b in batches] == [0, 3, 6]
        assert all(e is None for b in batches for e in b.errors)
        got = np.concatenate([b.scores for b in batches])
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4, err_msg=f"workers={workers}")
    np.testing.assert_allclose(got_direct, ref, rtol=0, atol=1e-4)

    # The comparison can fail: scores differ between images, and a careless loader
    # (no EXIF, alpha dropped, 16 bit clipped) scores those files measurably differently.
    assert np.ptp(ref) > 1e-3
    naive = reference_scores(tiny, torch.stack([naive_pixels(p, size) for p in paths]))
    for k in ("exif6", "rgba", "gray16", "la", "palette"):
        i = keys.index(k)
        assert abs(naive[i] - ref[i]) > 1e-3, k


def test_exif_orientation_is_applied(mode_files):
    img = load_rgb(mode_files["exif6"])
    assert img.size == (96, 160)  # stored 160x96, displayed rotated
    assert images.image_size(mode_files["exif6"]) == (96, 160)  # the header size agrees
    assert images.image_size(mode_files["plain"]) == (200, 150)
    with Image.open(mode_files["exif6"]) as raw:
        upright = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert np.abs(np.asarray(img).astype(int) - upright).max() == 0


def test_alpha_is_composited_on_neutral_grey(tmp_path):
    arr = np.zeros((2, 3, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 0)  # fully transparent red -> grey
    arr[0, 1] = (255, 0, 0, 255)  # opaque red stays red
    arr[0, 2] = (0, 0, 255, 128)  # half blue over grey
    arr[1, :] = (10, 20, 30, 255)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png")).astype(int)
    assert out[0, 0].tolist() == [128, 128, 128]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert np.abs(out[0, 2] - [64, 64, 192]).max() <= 1
    assert out[1, 0].tolist() == [10, 20, 30]

    Image.new("LA", (2, 2), (0, 0)).save(tmp_path / "la.png")
    assert np.asarray(load_rgb(tmp_path / "la.png")).reshape(-1, 3).tolist() == [[128] * 3] * 4

    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png", transparency=0)
    assert np.asarray(load_rgb(tmp_path / "p.png")).tolist() == [[[128, 128, 128], [0, 255, 0]]]


def test_sixteen_bit_grey_is_scaled_not_clipped(mode_files, tmp_path):
    img = load_rgb(mode_files["gray16"])
    with Image.open(mode_files["gray16"]) as raw:
        src = np.asarray(raw).astype(np.float64)
    got = np.asarray(img).astype(int)
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 0] == got[..., 2]).all()
    assert np.abs(got[..., 0] - src * 255 / 65535).max() <= 0.5 + 1e-9
    assert 0 < got.mean() < 255 and len(np.unique(got)) > 100

    # A dark 16-bit image (all values < 256) is still 16-bit data: near black, not mid grey.
    Image.fromarray(np.full((4, 4), 200, np.uint16)).save(tmp_path / "dark16.png")
    assert np.asarray(load_rgb(tmp_path / "dark16.png")).max() <= 1


def test_cmyk_becomes_rgb(mode_files):
    img = load_rgb(mode_files["cmyk"])
    assert img.mode == "RGB" and img.size == (128, 128)
    with Image.open(mode_files["cmyk"]) as raw:
        assert np.array_equal(np.asarray(img), np.asarray(raw.convert("RGB")))


def test_animated_gif_uses_first_frame(mode_files):
    with Image.open(mode_files["gif"]) as raw:
        first = np.asarray(raw.convert("RGB"))
        raw.seek(2)
        last = np.asarray(raw.convert("RGB"))
    got = np.asarray(load_rgb(mode_files["gif"]))
    assert np.array_equal(got, first)
    assert not np.array_equal(got, last)


def test_load_uint8_shape_and_normalize_range(mode_files):
    t = load_uint8(mode_files["plain"], 64)
    assert t.dtype == torch.uint8 and t.shape == (3, 64, 64)
    x = normalize(torch.stack([torch.zeros_like(t), torch.full_like(t, 255)]))
    assert x.dtype == torch.float32
    assert x[0].eq(-1).all() and x[1].eq(1).all()


def test_content_hash_is_identity_of_bytes(tmp_path):
    a, b, c = tmp_path / "a.jpg", tmp_path / "sub b.jpg", tmp_path / "c.jpg"
    a.write_bytes(b"x" * 3_000_000)
    b.write_bytes(b"x" * 3_000_000)
    c.write_bytes(b"x" * 2_999_999 + b"y")
    assert images.content_hash(a) == images.content_hash(b) != images.content_hash(c)
    assert len(images.content_hash(a)) == 32


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "missing", "directory"])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, case, mode_files):
    path = tmp_path / f"bad {case}.jpg"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not an image\n")
    elif case == "truncated":
        with open(mode_files["plain"], "rb") as f:
            data = f.read()
        path.write_bytes(data[: len(data) // 2])
    elif case == "directory":
        path.mkdir()
    with pytest.raises(ImageError) as info:
        load_rgb(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg


def test_decompression_bomb_is_refused_as_such(tmp_path):
    """A real 20000x20000 (400 MP) 1-bit PNG of a few kilobytes: refused as a bomb, from the
    header, with a message that says so (not 'corrupt')."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    w = h = 20000
    idat = zlib.compress(b"\0" * ((w // 8 + 1) * h), 9)
    path = tmp_path / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", idat)
        + chunk(b"IEND", b"")
    )
    assert path.stat().st_size < 200_000
    for fn in (images.image_size, load_rgb):
        with pytest.raises(ImageError) as info:
            fn(path)
        msg = str(info.value)
        assert str(path) in msg and "megapixel" in msg and "bomb" in msg and "\n" not in msg


def test_bomb_limit_applies_below_pils_own_limit(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "x.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 9_999)
    with pytest.raises(ImageError, match="100x100"):
        load_rgb(tmp_path / "x.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 10_000)
    assert load_rgb(tmp_path / "x.png").size == (100, 100)


def _png16(path, a: np.ndarray, sbit: int | None = None):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(a.astype(np.uint16)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize(
    "bits, shifted, sbit",
    [
        (12, False, 12),  # 12-bit camera data as stored, sBIT says 12
        (12, True, 12),  # 12-bit data scaled to the 16-bit range, as the PNG standard asks
        (16, False, None),  # real 16-bit data
        (16, False, 16),
    ],
)
def test_deep_greyscale_is_scaled_by_its_real_bit_depth(tmp_path, bits, shifted, sbit):
    ramp = np.tile(np.linspace(0, 2**bits - 1, 64).round(), (8, 1))  # black .. white
    stored = ramp * 16 if shifted else ramp
    path = _png16(tmp_path / "deep.png", stored, sbit)
    assert images.png_significant_bits(path) == sbit
    got = np.asarray(load_rgb(path))[..., 0].astype(float)
    expect = ramp / (2**bits - 1) * 255
    assert np.abs(got - expect).max() <= 1.0  # mid grey stays mid grey; white is white
    assert got[:, -1].min() == 255 and got[:, 0].max() == 0


def test_a_dark_sixteen_bit_png_without_sbit_stays_dark(tmp_path):
    # issue 24: values under 4096 with no sBIT are 16-bit data (1/16 of white), not 12-bit
    for value in (3000, 4000):
        path = _png16(tmp_path / f"dark16-{value}.png", np.full((4, 4), value))
        assert abs(int(np.asarray(load_rgb(path))[0, 0, 0]) - round(value / 65535 * 255)) <= 1


def test_sbit_keeps_a_dark_twelve_bit_image_dark(tmp_path):
    # values up to 1000 of 4095: a quarter of white; sBIT says so, the data alone could not
    path = _png16(tmp_path / "dark12.png", np.full((4, 4), 1000), 12)
    assert abs(int(np.asarray(load_rgb(path))[0, 0, 0]) - round(1000 / 4095 * 255)) <= 1


def _png16_colour(path, a: np.ndarray, sbit: int | None = None):
    """A 16-bit RGB(A) PNG written by hand (PIL cannot write one)."""
    import struct
    import zlib

    h, w, c = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    extra = chunk(b"sBIT", bytes([sbit] * c)) if sbit else b""
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2 if c == 3 else 6, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("bits, sbit", [(12, 12), (16, None)])  # 12-bit data without sBIT: see below
def test_deep_colour_png_is_scaled_by_its_real_bit_depth(tmp_path, bits, sbit):
    top = 2**bits - 1
    ramp = np.linspace(0, top, 32).round()
    a = np.stack([np.tile(ramp, (6, 1)), np.tile(ramp[::-1], (6, 1)), np.full((6, 32), top / 2).round()], axis=-1)
    got = np.asarray(load_rgb(_png16_colour(tmp_path / "c.png", a, sbit))).astype(float)
    assert np.abs(got - a / top * 255).max() <= 1.0
    # with alpha: half transparent over the neutral grey
    rgba = np.concatenate([a, np.full((6, 32, 1), 65535 // 2)], axis=-1)
    got = np.asarray(load_rgb(_png16_colour(tmp_path / "ca.png", rgba, sbit))).astype(float)
    assert np.abs(got - (a / top * 255 * 0.5 + GREY * 0.5)).max() <= 1.5


def test_a_dark_sixteen_bit_colour_png_without_sbit_stays_dark(tmp_path):
    a = np.full((4, 4, 3), 4000)  # under 4096, no sBIT: 16-bit data, 1/16 of white
    got = np.asarray(load_rgb(_png16_colour(tmp_path / "dark.png", a))).astype(float)
    assert np.abs(got - 4000 / 65535 * 255).max() <= 1.0
