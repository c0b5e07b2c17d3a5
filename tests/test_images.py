"""Tests for fpn_zoo.images: file loading, input conversion and the model's input check.

Every image is made on the fly in ``tmp_path`` with known pixel values, so each test asserts exact results.
"""

from __future__ import annotations

import doctest
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import fpn_zoo.images as images_module
from fpn_zoo.images import ImageError, check_model_input, load_image, sample_image_path, to_model_input

ORIENTATION = 0x0112
UINT16 = getattr(torch, "uint16", None)


def _save(img: Image.Image, path: pathlib.Path, **kwargs: object) -> pathlib.Path:
    img.save(path, **kwargs)
    return path


def _mode(path: pathlib.Path) -> str:
    with Image.open(path) as img:
        return img.mode


def _gray(a: np.ndarray) -> torch.Tensor:
    """Expected output for greyscale data already scaled to [0, 1]: the channel replicated three times."""
    t = torch.from_numpy(np.asarray(a, dtype=np.float32))
    return t.unsqueeze(0).repeat(3, 1, 1)


def _rgb(a: np.ndarray, scale: float = 255.0) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32)[..., :3].transpose(2, 0, 1).copy()) / scale


def _torchvision_rgb(path: pathlib.Path) -> torch.Tensor | None:
    """The reference for dropping alpha: torchvision's decoder in RGB mode, or None where it is gone."""
    try:
        from torchvision.io import ImageReadMode, read_image
    except ImportError:  # torchvision deprecated its image decoders in 0.29 and plans to remove them.
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return read_image(str(path), mode=ImageReadMode.RGB).float() / 255


def _check_contract(t: torch.Tensor, h: int, w: int) -> None:
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert tuple(t.shape) == (3, h, w)
    assert float(t.min()) >= 0.0 and float(t.max()) <= 1.0


# ---------------------------------------------------------------------------------------------------------- modes


def test_mode_1(tmp_path: pathlib.Path) -> None:
    img = Image.new("1", (3, 2), 0)
    img.putpixel((2, 1), 1)
    out = load_image(_save(img, tmp_path / "b.png"))
    _check_contract(out, 2, 3)
    assert torch.equal(out, _gray([[0, 0, 0], [0, 0, 1]]))


def test_mode_l(tmp_path: pathlib.Path) -> None:
    a = np.array([[0, 51, 255], [1, 128, 254]], dtype=np.uint8)
    path = _save(Image.fromarray(a), tmp_path / "l.png")
    assert _mode(path) == "L"
    out = load_image(path)
    _check_contract(out, 2, 3)
    assert torch.allclose(out, _gray(a / 255.0), atol=1e-7)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_mode_la_drops_alpha(tmp_path: pathlib.Path) -> None:
    a = np.zeros((2, 2, 2), dtype=np.uint8)
    a[..., 0] = [[10, 20], [30, 40]]
    a[..., 1] = [[0, 255], [0, 128]]  # Compositing over black or white would change the fully transparent pixels.
    path = _save(Image.fromarray(a, mode="LA"), tmp_path / "la.png")
    out = load_image(path)
    assert torch.allclose(out, _gray(a[..., 0] / 255.0), atol=1e-7)
    reference = _torchvision_rgb(path)
    assert reference is None or torch.equal(out, reference)


def _palette_image() -> Image.Image:
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
    img.putdata([0, 1, 2])
    return img


def test_mode_p(tmp_path: pathlib.Path) -> None:
    path = _save(_palette_image(), tmp_path / "p.png")
    assert _mode(path) == "P"
    out = load_image(path)
    _check_contract(out, 1, 3)
    assert out[:, 0, :].T.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_mode_p_with_transparency_drops_alpha_without_warning(tmp_path: pathlib.Path) -> None:
    path = _save(_palette_image(), tmp_path / "pt.png", transparency=0)
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" in img.info
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = load_image(path)
    assert out[:, 0, :].T.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    reference = _torchvision_rgb(path)
    assert reference is None or torch.equal(out, reference)


def test_mode_rgb(tmp_path: pathlib.Path) -> None:
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14
    out = load_image(_save(Image.fromarray(a), tmp_path / "rgb.png"))
    _check_contract(out, 2, 3)
    assert torch.allclose(out, _rgb(a), atol=1e-7)
    assert out[1, 0, 2].item() == pytest.approx(a[0, 2, 1] / 255, abs=1e-7)


def test_mode_rgba_drops_alpha(tmp_path: pathlib.Path) -> None:
    a = np.zeros((2, 2, 4), dtype=np.uint8)
    a[..., :3] = [[[200, 100, 50], [1, 2, 3]], [[9, 8, 7], [255, 255, 0]]]
    a[..., 3] = [[0, 255], [64, 0]]
    path = _save(Image.fromarray(a, mode="RGBA"), tmp_path / "rgba.png")
    out = load_image(path)
    assert torch.allclose(out, _rgb(a), atol=1e-7)
    reference = _torchvision_rgb(path)
    assert reference is None or torch.equal(out, reference)


def test_mode_cmyk(tmp_path: pathlib.Path) -> None:
    img = Image.new("CMYK", (2, 1))
    img.putdata([(0, 255, 255, 0), (0, 0, 0, 0)])  # Pure red, then white.
    path = _save(img, tmp_path / "cmyk.tiff")
    assert _mode(path) == "CMYK"
    out = load_image(path)
    assert out[:, 0, :].T.tolist() == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def test_mode_ycbcr(tmp_path: pathlib.Path) -> None:
    img = Image.new("YCbCr", (2, 1))
    img.putdata([(100, 120, 140), (255, 128, 128)])
    path = _save(img, tmp_path / "ycc.tiff")
    assert _mode(path) == "YCbCr"
    expected = _rgb(np.asarray(img.convert("RGB")))
    assert torch.allclose(load_image(path), expected, atol=1e-7)
    assert expected[:, 0, 1].tolist() == [1.0, 1.0, 1.0]  # Y=255 with neutral chroma is white.


def test_16bit_png_keeps_precision(tmp_path: pathlib.Path) -> None:
    a = np.array([[0, 1, 65535], [257 * 7, 257 * 128, 257 * 254]], dtype=np.uint16)
    path = _save(Image.fromarray(a), tmp_path / "g16.png")
    assert _mode(path).startswith("I")
    out = load_image(path)
    _check_contract(out, 2, 3)
    assert out[0, 0, 2].item() == 1.0
    assert out[0, 0, 1].item() == pytest.approx(1 / 65535, abs=1e-9)  # An 8-bit detour would give 0.
    for col, k in enumerate((7, 128, 254)):
        assert out[0, 1, col].item() == pytest.approx(k / 255, abs=1e-6)
    assert torch.equal(out[0], out[2])


@pytest.mark.parametrize(("mode", "byteorder"), [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2")])
def test_16bit_modes(tmp_path: pathlib.Path, mode: str, byteorder: str) -> None:
    a = np.array([[0, 257 * 3], [65535, 300]], dtype=np.uint16)
    img = Image.frombytes(mode, (2, 2), a.astype(byteorder).tobytes())
    assert img.mode == mode
    expected = _gray(a / 65535.0)
    assert torch.allclose(to_model_input(img), expected, atol=1e-7)
    if mode != "I;16L":  # Pillow cannot write I;16L files; it reads little-endian TIFF as I;16.
        path = _save(img, tmp_path / "g16.tiff")
        assert _mode(path) == mode
        assert torch.allclose(load_image(path), expected, atol=1e-7)


def test_mode_i_holding_16bit_data(tmp_path: pathlib.Path) -> None:
    a = np.array([[0, 257 * 9, 65535]], dtype=np.uint16)
    png = _save(Image.fromarray(a), tmp_path / "g16.png")
    with Image.open(png) as img:
        as_i = img.convert("I")  # What older Pillow returned for 16-bit PNGs.
    assert as_i.mode == "I"
    assert torch.allclose(to_model_input(as_i), _gray(a / 65535.0), atol=1e-7)
    tiff = _save(Image.fromarray(a.astype(np.int32), mode="I"), tmp_path / "i.tiff")
    assert _mode(tiff) == "I"
    assert load_image(tiff)[0, 0, 1].item() == pytest.approx(9 / 255, abs=1e-6)


def test_mode_i_beyond_16bit_is_refused(tmp_path: pathlib.Path) -> None:
    path = _save(Image.fromarray(np.array([[0, 70000]], dtype=np.int32), mode="I"), tmp_path / "i32.tiff")
    with pytest.raises(ImageError, match=r"'I' with values in \[0, 70000\].*0-65535") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_mode_f(tmp_path: pathlib.Path) -> None:
    a = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    path = _save(Image.fromarray(a, mode="F"), tmp_path / "f.tiff")
    assert _mode(path) == "F"
    assert torch.equal(load_image(path), _gray(a))


@pytest.mark.parametrize("bad", [1.5, -0.25, float("nan")])
def test_mode_f_outside_unit_range_is_refused(tmp_path: pathlib.Path, bad: float) -> None:
    path = _save(Image.fromarray(np.array([[0.0, bad]], dtype=np.float32), mode="F"), tmp_path / "f.tiff")
    with pytest.raises(ImageError, match=r"float values in \[.*\]; float images must lie in \[0, 1\]") as info:
        load_image(path)
    assert str(path) in str(info.value) and "'F'" in str(info.value)


def test_exif_orientation_is_applied(tmp_path: pathlib.Path) -> None:
    a = np.zeros((2, 4, 3), dtype=np.uint8)
    a[0, 0] = (255, 0, 0)
    a[1, 3] = (0, 0, 255)
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # Stored sideways: viewers rotate 90 degrees clockwise.
    path = _save(Image.fromarray(a), tmp_path / "rotated.png", exif=exif)
    out = load_image(path)
    _check_contract(out, 4, 2)
    assert torch.equal(out, _rgb(np.rot90(a, k=-1)))
    assert out[:, 0, 1].tolist() == [1.0, 0.0, 0.0]
    # A PIL image is used as given, so boxes line up with the object the caller holds.
    with Image.open(path) as img:
        assert tuple(to_model_input(img).shape) == (3, 2, 4)


def test_one_by_one_image(tmp_path: pathlib.Path) -> None:
    out = load_image(_save(Image.new("RGB", (1, 1), (255, 0, 51)), tmp_path / "one.png"))
    _check_contract(out, 1, 1)
    assert out.flatten().tolist() == pytest.approx([1.0, 0.0, 0.2], abs=1e-7)


def test_path_types(tmp_path: pathlib.Path) -> None:
    path = _save(Image.new("RGB", (3, 2), (0, 255, 0)), tmp_path / "g.png")
    assert torch.equal(load_image(str(path)), load_image(path))
    assert torch.equal(to_model_input(str(path)), load_image(path))
    assert torch.equal(to_model_input(path), load_image(path))
    with pytest.raises(ImageError, match=r"expects a file path.*got bytes"):
        load_image(b"g.png")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="No such image file") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImageError, match="is a directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"this is not an image\n" * 20, b"\x89PNG\r\n\x1a\n"])
def test_not_an_image(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "fake.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match="format Pillow can read, such as JPEG, PNG") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_truncated_file(tmp_path: pathlib.Path, fmt: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(noise), tmp_path / f"whole.{fmt}", format=fmt)
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_permission_denied(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.png"

    def deny(*args: object, **kwargs: object) -> Image.Image:
        raise PermissionError(13, "Permission denied", str(path))

    # Root ignores file modes, so the OS error is simulated where chmod would not trigger it.
    monkeypatch.setattr(Image, "open", deny)
    with pytest.raises(ImageError, match="Permission denied") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file")
def test_permission_denied_for_real(tmp_path: pathlib.Path) -> None:
    path = _save(Image.new("RGB", (2, 2)), tmp_path / "secret.png")
    path.chmod(0)
    try:
        with pytest.raises(ImageError, match="Permission denied"):
            load_image(path)
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize("side", [12, 20])  # 144 pixels: Pillow only warns; 400 pixels: Pillow raises.
def test_decompression_bomb(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, side: int) -> None:
    path = _save(Image.new("L", (side, side)), tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # The refusal must be an ImageError, not a warning.
        with pytest.raises(ImageError, match=r"MAX_IMAGE_PIXELS = 100\b") as info:
            load_image(path)
    message = str(info.value)
    assert str(path) in message and f"{side * side} pixels" in message
    assert Image.MAX_IMAGE_PIXELS == 100  # The global limit is left alone.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    _check_contract(load_image(path), side, side)


# -------------------------------------------------------------------------------------------- to_model_input: numpy


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 51], [255, 102]], dtype=np.uint8), [[0.0, 0.2], [1.0, 0.4]]),
        (np.array([[[0], [51]], [[255], [102]]], dtype=np.uint8), [[0.0, 0.2], [1.0, 0.4]]),
        (np.array([[0, 257 * 51], [65535, 1]], dtype=np.uint16), [[0.0, 0.2], [1.0, 1 / 65535]]),
        (np.array([[False, True], [True, False]]), [[0.0, 1.0], [1.0, 0.0]]),
        (np.array([[0.0, 0.2], [1.0, 0.4]], dtype=np.float64), [[0.0, 0.2], [1.0, 0.4]]),
        (np.array([[0.0, 0.2], [1.0, 0.4]], dtype=np.float16), [[0.0, 0.2], [1.0, 0.4]]),
    ],
)
def test_numpy_greyscale(array: np.ndarray, expected: list[list[float]]) -> None:
    out = to_model_input(array)
    _check_contract(out, 2, 2)
    assert torch.allclose(out, _gray(expected), atol=1e-3 if array.dtype == np.float16 else 1e-7)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_numpy_colour(channels: int, dtype: type) -> None:
    scale = {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0}[dtype]
    unit = np.random.default_rng(1).random((3, 5, channels))
    array = (unit * scale).astype(dtype) if scale > 1 else unit.astype(dtype)
    out = to_model_input(array)
    _check_contract(out, 3, 5)
    assert torch.allclose(out, _rgb(array, scale), atol=1e-7)  # For 4 channels this also checks alpha is dropped.


def test_numpy_non_contiguous() -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)[:, ::-1]
    assert torch.allclose(to_model_input(array), _gray(array / 255.0), atol=1e-7)


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.full((2, 2, 3), 1.5, dtype=np.float32), r"float values in \[1.5, 1.5\].*\[0, 1\].*divide"),
        (np.full((2, 2), -0.1), r"float values in \[-0.1, -0.1\]"),
        (np.full((2, 2), np.nan, dtype=np.float32), r"float values in \[nan, nan\]"),
        (np.zeros((2, 2), dtype=np.int64), r"dtype int64; valid dtypes are uint8 .*astype\(np.uint8\)"),
        (np.zeros((2, 2), dtype=np.complex64), r"dtype complex64"),
        (np.zeros((3, 8, 8), dtype=np.uint8), r"shape \(3, 8, 8\); valid layouts are \(H, W\).*looks like CHW"),
        (np.zeros((8, 8, 2), dtype=np.uint8), r"shape \(8, 8, 2\); valid layouts are \(H, W\), \(H, W, 1\)"),
        (np.zeros(8, dtype=np.uint8), r"shape \(8,\); valid layouts"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), r"4 dimensions \(2, 8, 8, 3\), a batch; pass a list of \(3, H, W\)"),
        (np.zeros((0, 5), dtype=np.uint8), r"shape \(0, 5\); height and width must both be at least 1"),
    ],
)
def test_numpy_refusals(array: np.ndarray, pattern: str) -> None:
    with pytest.raises(ImageError, match=pattern):
        to_model_input(array)


# ------------------------------------------------------------------------------------------- to_model_input: torch


def test_tensor_float32_chw_passes_through() -> None:
    t = torch.rand(3, 4, 5)
    assert to_model_input(t) is t


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_tensor_other_floats(dtype: torch.dtype) -> None:
    t = torch.tensor([[[0.0, 0.5], [1.0, 0.25]]] * 3, dtype=dtype)
    out = to_model_input(t)
    _check_contract(out, 2, 2)
    assert torch.equal(out, t.float())


def test_tensor_integer_and_bool_dtypes() -> None:
    u8 = torch.tensor([[[0, 51, 255]]], dtype=torch.uint8).repeat(3, 1, 1)
    assert torch.allclose(to_model_input(u8), torch.tensor([[[0.0, 0.2, 1.0]]] * 3), atol=1e-7)
    b = torch.tensor([[[True, False]]] * 3)
    assert to_model_input(b).tolist() == [[[1.0, 0.0]]] * 3
    if UINT16 is not None:  # What torchvision.io.read_image returns for 16-bit PNGs in ImageReadMode.UNCHANGED.
        u16 = torch.tensor([[[0, 257 * 51, 65535]]] * 3, dtype=torch.int32).to(UINT16)
        assert torch.allclose(to_model_input(u16), torch.tensor([[[0.0, 0.2, 1.0]]] * 3), atol=1e-7)


@pytest.mark.parametrize(
    ("shape", "source"),
    [
        ((1, 4, 5), lambda t: t.repeat(3, 1, 1)),
        ((4, 4, 5), lambda t: t[:3]),
        ((4, 5), lambda t: t.unsqueeze(0).repeat(3, 1, 1)),
        ((6, 5, 3), lambda t: t.permute(2, 0, 1)),
        ((6, 5, 1), lambda t: t.permute(2, 0, 1).repeat(3, 1, 1)),
        ((6, 5, 4), lambda t: t.permute(2, 0, 1)[:3]),
        ((3, 1, 1), lambda t: t),  # A 1x1 CHW image must not be mistaken for HWC.
        ((3, 4, 3), lambda t: t),  # First dimension 1, 3 or 4 means CHW, whatever the last one is.
    ],
)
def test_tensor_layouts(shape: tuple[int, ...], source: object) -> None:
    t = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = to_model_input(t)
    expected = source(t).float() / 255  # type: ignore[operator]
    assert out.shape[0] == 3 and out.dtype == torch.float32
    assert torch.equal(out, expected)
    assert out.is_contiguous()


def test_tensor_grey_is_a_copy() -> None:
    t = torch.rand(1, 2, 2)
    out = to_model_input(t)
    out[0, 0, 0] = 0.5
    assert torch.equal(out[1], t[0]) and not torch.equal(out[0], out[1])


@pytest.mark.parametrize(
    ("tensor", "pattern"),
    [
        (torch.rand(2, 3, 8, 8), r"4 dimensions \(2, 3, 8, 8\), a batch; pass a list of \(3, H, W\) tensors"),
        (torch.rand(2, 8, 8), r"shape \(2, 8, 8\); valid layouts are \(3, H, W\), \(1, H, W\)"),
        (torch.rand(5, 8, 5), r"shape \(5, 8, 5\); valid layouts"),
        (torch.rand(8), r"shape \(8,\); valid layouts"),
        (torch.rand(3, 0, 4), r"shape \(3, 0, 4\); height and width must both be at least 1"),
        (torch.full((3, 2, 2), 255.0), r"float values in \[255, 255\]; float images must lie in \[0, 1\].*255"),
        (torch.full((3, 2, 2), -2.1), r"float values in \[-2.1, -2.1\].*mean/std"),
        (torch.tensor([[[0.5, float("nan")]]] * 3), r"float values in \[nan, nan\]"),
        (torch.zeros(3, 2, 2, dtype=torch.int64), r"dtype torch.int64; valid dtypes are torch.uint8"),
    ],
)
def test_tensor_refusals(tensor: torch.Tensor, pattern: str) -> None:
    with pytest.raises(ImageError, match=pattern):
        to_model_input(tensor)


def test_pil_image_modes_match_file_loading(tmp_path: pathlib.Path) -> None:
    for img in (_palette_image(), Image.new("CMYK", (2, 2), (0, 255, 255, 0)), Image.new("LA", (2, 2), (77, 0))):
        path = _save(img, tmp_path / "x.tiff")
        assert torch.equal(to_model_input(img), load_image(path))


def test_other_inputs_are_refused() -> None:
    with pytest.raises(ImageError, match=r"takes one image, got a list; .*\[to_model_input\(x\) for x in images\]"):
        to_model_input([torch.rand(3, 2, 2)])  # type: ignore[arg-type]
    with pytest.raises(ImageError, match=r"Cannot use a int as an image; expected a file path, a PIL\.Image\.Image"):
        to_model_input(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ check_model_input


def test_check_model_input_accepts_good_input() -> None:
    check_model_input([torch.rand(3, 8, 9), torch.rand(3, 1, 1)])
    check_model_input((torch.rand(3, 4, 4, dtype=torch.float16),))
    check_model_input([torch.full((3, 2, 2), 255.0)])  # Value range is deliberately not checked here.


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(2, 3, 8, 8), "images is a 4-D tensor of shape (2, 3, 8, 8); the model takes a list of (3, H, W)"),
        (torch.rand(3, 8, 8), "images is a single tensor of shape (3, 8, 8); the model takes a list of (3, H, W)"),
        (np.zeros((3, 8, 8)), "images is a ndarray; the model takes a list of (3, H, W) float tensors."),
        ([], "images is empty"),
        ([torch.rand(3, 4, 4), np.zeros((3, 4, 4))], "image 1 is a ndarray, not a torch.Tensor"),
        (
            [torch.zeros(3, 4, 4, dtype=torch.uint8)],
            "image 0 has dtype torch.uint8; the model expects float images in [0, 1] — divide by 255 or use "
            "fpn_zoo.to_model_input",
        ),
        (
            [torch.rand(8, 6, 3)],
            "image 0 has shape (8, 6, 3), but the model expects (3, H, W): it looks like HWC (H, W, C); "
            "permute(2, 0, 1).",
        ),
        ([torch.rand(1, 8, 8)], "image 0 has shape (1, 8, 8), but the model expects (3, H, W): it is greyscale"),
        (
            [torch.rand(4, 8, 8)],
            "image 0 has shape (4, 8, 8), but the model expects (3, H, W): it has 4 channels (RGBA?); drop alpha",
        ),
        (
            [torch.rand(5, 8, 8)],
            "image 0 has shape (5, 8, 8), but the model expects (3, H, W): it has 5 channels where 3 (RGB) are needed",
        ),
        ([torch.rand(3, 0, 8)], "image 0 has shape (3, 0, 8); height and width must both be at least 1"),
        ([torch.rand(1, 3, 8, 8)], "image 0 has shape (1, 3, 8, 8) (4-D); the model expects (3, H, W); drop the batch"),
        ([torch.rand(8, 8)], "image 0 has shape (8, 8) (2-D); the model expects (3, H, W)."),
    ],
)
def test_check_model_input_refusals(images: object, message: str) -> None:
    with pytest.raises(ImageError) as info:
        check_model_input(images)  # type: ignore[arg-type]
    assert message in str(info.value)


# ----------------------------------------------------------------------------------------------- sample and module


def test_sample_image() -> None:
    path = sample_image_path()
    assert isinstance(path, pathlib.Path) and path.name == "astronaut.jpg" and path.is_file()
    assert path.stat().st_size < 100_000
    assert (path.parent / "README.md").is_file()
    out = load_image(path)
    _check_contract(out, 512, 512)
    assert 0.2 < out.mean().item() < 0.8 and out.std().item() > 0.1  # A real photo, not a blank placeholder.


def test_docstring_examples_run() -> None:
    result = doctest.testmod(images_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5 and result.failed == 0


def test_module_imports_nothing_heavy() -> None:
    # Loaded from its file so the check covers this module only, not whatever fpn_zoo/__init__.py imports.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('probe', {images_module.__file__!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = {'torchvision', 'timm', 'huggingface_hub', 'safetensors', 'cv2', 'matplotlib'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
