"""Turning user images into model inputs.

The detectors take a list of ``(3, H, W)`` float tensors with RGB values in ``[0, 1]`` (torchvision's detection
contract). [`load_image`][fpn_zoo.images.load_image] reads files, [`to_model_input`][fpn_zoo.images.to_model_input]
converts whatever a user holds (path, PIL image, numpy array, tensor) and
[`check_model_input`][fpn_zoo.images.check_model_input] is the cheap strict check the model runs in ``forward``. Every
refusal is an [`ImageError`][fpn_zoo.images.ImageError] that says what was found and what is valid.

Alpha channels are dropped, never composited, matching ``torchvision.io.read_image(path, ImageReadMode.RGB)``.
"""

from __future__ import annotations

import importlib.resources
import os
import pathlib
import re
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

__all__ = ["ImageError", "check_model_input", "load_image", "sample_image_path", "to_model_input"]

_SAMPLE_IMAGE = "astronaut.jpg"
_READABLE = "a format Pillow can read, such as JPEG, PNG, BMP, GIF, TIFF or WebP (`python -m PIL --report` lists all)"
_ARRAY_LAYOUTS = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
_TENSOR_LAYOUTS = "(3, H, W), (1, H, W), (4, H, W), (H, W) or (H, W, C) with C in 1, 3, 4"
_ARRAY_DTYPES = "uint8 (0-255), uint16 (0-65535), bool, or float in [0, 1]"
_TENSOR_DTYPES = "torch.uint8 (0-255), torch.uint16 (0-65535), torch.bool, or float in [0, 1]"
_BATCH_HINT = "pass a list of (3, H, W) tensors instead, e.g. list(batch)"
_NORMALISE_HINT = "divide 0-255 data by 255, and do not mean/std-normalise (the model does that itself)"


class ImageError(ValueError):
    """An image, or a list of images, that cannot be used as model input; the message says what is valid."""


def load_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image file into a ``(3, H, W)`` float32 RGB tensor with values in ``[0, 1]``.

    EXIF orientation is applied, so the tensor is upright as image viewers show it. Greyscale (``1``, ``L``, 16-bit
    ``I;16*`` and ``I``) is replicated to three channels; palette, CMYK and YCbCr images are converted to RGB; alpha
    (``LA``, ``RGBA``, palette transparency) is dropped without compositing, as ``torchvision.io.read_image(path,
    ImageReadMode.RGB)`` does. 16-bit greyscale keeps its precision (divided by 65535); ``I`` images are read as 16-bit
    data and refused outside ``[0, 65535]``. Float (``F``) images must already lie in ``[0, 1]``. Pillow itself
    decodes 16-bit-per-channel colour PNGs to 8 bits; for full precision decode them with a library that keeps 16
    bits (e.g. imageio, or OpenCV's ``IMREAD_UNCHANGED`` then BGR to RGB) and pass the uint16 array to
    [`to_model_input`][fpn_zoo.images.to_model_input]. Only the first frame of animated or multi-page files is read.

    Args:
        path: Path of the image file.

    Returns:
        A float32 tensor of shape ``(3, H, W)`` with values in ``[0, 1]``.

    Raises:
        ImageError: If the file is missing, a directory, unreadable, not an image Pillow can decode, truncated,
            larger than ``PIL.Image.MAX_IMAGE_PIXELS``, or holds values outside the range of its mode.

    Examples:
        >>> from fpn_zoo.images import load_image, sample_image_path
        >>> load_image(sample_image_path()).shape
        torch.Size([3, 512, 512])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ImageError(f"load_image expects a file path (str or os.PathLike), got {type(path).__name__}.")
    name = os.fspath(path)
    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; silence the warning because we refuse below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(name)
    except FileNotFoundError:
        raise ImageError(f"No such image file: '{name}'.") from None
    except (IsADirectoryError, PermissionError):
        if os.path.isdir(name):  # Windows reports opening a directory as PermissionError.
            raise ImageError(f"'{name}' is a directory, not an image file; pass the path of one image file.") from None
        raise ImageError(f"Permission denied reading image file '{name}'; check the file's permissions.") from None
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name, _pixels_from_message(str(exc))) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"Cannot read '{name}' as an image ({exc}); expected {_READABLE}.") from None
    with img:
        width, height = img.size
        if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
            raise _bomb_error(name, width * height, f" ({width}x{height})")
        try:
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
        except Image.DecompressionBombError as exc:
            raise _bomb_error(name, _pixels_from_message(str(exc))) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(
                f"Cannot decode image file '{name}' ({exc}); it may be truncated or corrupt. Expected {_READABLE}."
            ) from None
        return _pil_to_tensor(img, f"image file '{name}'")


def to_model_input(image: torch.Tensor | Image.Image | np.ndarray | str | os.PathLike[str]) -> torch.Tensor:
    """Convert one user image to the model's input: a ``(3, H, W)`` float32 RGB tensor with values in ``[0, 1]``.

    Accepted inputs:

    * a path: read with [`load_image`][fpn_zoo.images.load_image];
    * a PIL image: converted with the same mode rules as [`load_image`][fpn_zoo.images.load_image], but used as given
      (EXIF orientation is not applied, so boxes line up with the image object you hold; call
      ``PIL.ImageOps.exif_transpose`` first to get the upright image);
    * a numpy array laid out ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (the PIL convention, RGB; convert
      OpenCV's BGR first), of dtype uint8 (divided by 255), uint16 (divided by 65535), bool, or float in ``[0, 1]``;
    * a torch tensor laid out ``(3, H, W)``, ``(1, H, W)`` (replicated), ``(4, H, W)`` (alpha dropped), ``(H, W)``, or
      ``(H, W, C)`` with ``C`` in 1, 3, 4 when the first dimension is not 1, 3 or 4 (so tiny CHW images stay CHW).
      Dtypes as for numpy. A float32 ``(3, H, W)`` tensor in range is returned as is; tensors keep their device.

    Fourth channels are alpha and are dropped. Float values outside ``[0, 1]`` are refused rather than clipped,
    because they usually mean 0-255 data or mean/std-normalised data, which the model would silently mis-detect.

    Args:
        image: The image to convert.

    Returns:
        A float32 tensor of shape ``(3, H, W)`` with values in ``[0, 1]``.

    Raises:
        ImageError: If the input type, layout, dtype or value range is not one of the above, or a file cannot be read.

    Examples:
        >>> import numpy as np
        >>> from fpn_zoo.images import to_model_input
        >>> x = to_model_input(np.full((4, 6, 3), 255, dtype=np.uint8))
        >>> x.shape, x.dtype, x.max().item()
        (torch.Size([3, 4, 6]), torch.float32, 1.0)
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        try:
            return _pil_to_tensor(image, "PIL image")
        except (OSError, SyntaxError, EOFError) as exc:  # Lazily loaded images decode here.
            raise ImageError(f"Cannot decode the PIL image ({exc}); it may be truncated or corrupt.") from None
    if isinstance(image, np.ndarray):
        return _array_to_tensor(image, "numpy array")
    if isinstance(image, torch.Tensor):
        return _tensor_to_tensor(image)
    if isinstance(image, (list, tuple)):
        raise ImageError(
            f"to_model_input takes one image, got a {type(image).__name__}; convert several with "
            "[to_model_input(x) for x in images]."
        )
    raise ImageError(
        f"Cannot use a {type(image).__name__} as an image; expected a file path, a PIL.Image.Image, "
        "a numpy array or a torch.Tensor."
    )


def check_model_input(images: list[torch.Tensor]) -> None:
    """Check, without converting, that ``images`` is what the model's ``forward`` accepts.

    Valid input is a non-empty list (or tuple) of float tensors of shape ``(3, H, W)`` with ``H, W >= 1``. Values are
    expected in ``[0, 1]`` but not checked here: scanning every pixel would cost time on each forward pass. Use
    [`to_model_input`][fpn_zoo.images.to_model_input] to convert, and range-check, user images.

    Args:
        images: The images handed to the model.

    Raises:
        ImageError: Naming the first offending image and what was found (type, shape or dtype).

    Examples:
        >>> import torch
        >>> from fpn_zoo.images import check_model_input
        >>> check_model_input([torch.rand(3, 64, 80), torch.rand(3, 32, 32)])
        >>> try:
        ...     check_model_input(torch.rand(2, 3, 8, 8))
        ... except ValueError as err:
        ...     print(err)
        images is a 4-D tensor of shape (2, 3, 8, 8); the model takes a list of (3, H, W) tensors, e.g. list(batch).
    """
    if not isinstance(images, (list, tuple)):
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            raise ImageError(
                f"images is a 4-D tensor of shape {tuple(images.shape)}; the model takes a list of (3, H, W) "
                "tensors, e.g. list(batch)."
            )
        if isinstance(images, torch.Tensor):
            raise ImageError(
                f"images is a single tensor of shape {tuple(images.shape)}; the model takes a list of (3, H, W) "
                "tensors, e.g. [image]."
            )
        raise ImageError(f"images is a {type(images).__name__}; the model takes a list of (3, H, W) float tensors.")
    if not images:
        raise ImageError("images is empty; the model takes a list of at least one (3, H, W) float tensor.")
    for i, img in enumerate(images):
        if not isinstance(img, torch.Tensor):
            raise ImageError(
                f"image {i} is a {type(img).__name__}, not a torch.Tensor; convert it with fpn_zoo.to_model_input."
            )
        shape = tuple(img.shape)
        if img.dim() != 3:
            hint = "; drop the batch dimension with image[0]" if img.dim() == 4 and shape[0] == 1 else ""
            raise ImageError(f"image {i} has shape {shape} ({img.dim()}-D); the model expects (3, H, W){hint}.")
        if shape[0] != 3:
            if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
                hint = "looks like HWC (H, W, C); permute(2, 0, 1)"
            elif shape[0] == 1:
                hint = "is greyscale; repeat it to 3 channels with image.expand(3, -1, -1)"
            elif shape[0] == 4:
                hint = "has 4 channels (RGBA?); drop alpha with image[:3]"
            else:
                hint = f"has {shape[0]} channels where 3 (RGB) are needed"
            raise ImageError(f"image {i} has shape {shape}, but the model expects (3, H, W): it {hint}.")
        if shape[1] < 1 or shape[2] < 1:
            raise ImageError(f"image {i} has shape {shape}; height and width must both be at least 1.")
        if not img.is_floating_point():
            raise ImageError(
                f"image {i} has dtype {img.dtype}; the model expects float images in [0, 1] — divide by 255 or "
                "use fpn_zoo.to_model_input."
            )


def sample_image_path() -> pathlib.Path:
    """Path of the sample photo shipped with the package (NASA's public-domain portrait of Eileen Collins, 512x512).

    Returns:
        The path of ``fpn_zoo/assets/astronaut.jpg``.

    Raises:
        FileNotFoundError: If the installed package lacks its assets (e.g. it runs from a zip archive).

    Examples:
        >>> from fpn_zoo.images import sample_image_path
        >>> sample_image_path().name
        'astronaut.jpg'
    """
    path = importlib.resources.files("fpn_zoo") / "assets" / _SAMPLE_IMAGE
    if not isinstance(path, pathlib.Path) or not path.is_file():
        raise FileNotFoundError(
            f"The sample image {path} is not a file on disk; reinstall fpn-zoo from a wheel or source checkout "
            "so that fpn_zoo/assets/ is installed."
        )
    return path


def _pil_to_tensor(img: Image.Image, what: str) -> torch.Tensor:
    mode = img.mode
    if mode in ("1", "L", "RGB") or mode.startswith("I;16"):
        return _array_to_tensor(np.asarray(img), what)
    if mode in ("LA", "RGBA", "RGBX"):
        arr = np.asarray(img)
        return _array_to_tensor(arr[..., 0] if mode == "LA" else arr[..., :3], what)
    if mode in ("P", "PA"):
        # Via RGBA so palette transparency cannot trigger Pillow's conversion warning; the alpha is then dropped.
        return _array_to_tensor(np.asarray(img.convert("RGBA"))[..., :3], what)
    if mode == "I":
        # Older Pillow (and some decoders) return 16-bit greyscale as 32-bit "I"; anything wider has no known scale.
        arr = np.asarray(img)
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"The {what} has 32-bit integer mode 'I' with values in [{lo}, {hi}]; only 16-bit data "
                "(0-65535) can be scaled to [0, 1]. Convert it to 8- or 16-bit first."
            )
        return _array_to_tensor(arr.astype(np.uint16), what)
    if mode == "F":
        return _array_to_tensor(np.asarray(img), f"{what} (float mode 'F')")
    try:
        rgb = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, premultiplied RGBa, ...
    except ValueError:
        raise ImageError(
            f"The {what} has mode '{mode}', which cannot be converted to RGB; supported modes are 1, L, LA, P, PA, "
            "RGB, RGBA, CMYK, YCbCr, I;16, I;16L, I;16B, I and F."
        ) from None
    return _array_to_tensor(np.asarray(rgb), what)


def _array_to_tensor(arr: np.ndarray, what: str) -> torch.Tensor:
    shape = arr.shape
    if arr.ndim == 4:
        raise ImageError(f"The {what} has 4 dimensions {shape}, a batch; {_BATCH_HINT}.")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        hint = "; it looks like CHW, use arr.transpose(1, 2, 0)" if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) else ""
        raise ImageError(f"The {what} has shape {shape}; valid layouts are {_ARRAY_LAYOUTS}{hint}.")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"The {what} has shape {shape}; height and width must both be at least 1.")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / np.float32(255)
    elif arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # Any byte order; scaled so 16-bit precision survives.
        out = arr.astype(np.float32) / np.float32(65535)
    elif arr.dtype == np.bool_:
        out = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float32)
        lo, hi = float(out.min()), float(out.max())
        if not (lo >= 0.0 and hi <= 1.0):  # Written so that NaN fails too.
            raise ImageError(
                f"The {what} has float values in [{lo:g}, {hi:g}]; float images must lie in [0, 1] — {_NORMALISE_HINT}."
            )
    else:
        raise ImageError(
            f"The {what} has dtype {arr.dtype}; valid dtypes are {_ARRAY_DTYPES} (for 0-255 integers use "
            "arr.astype(np.uint8))."
        )
    chw = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1)))
    return chw.repeat(3, 1, 1) if chw.shape[0] == 1 else chw


def _tensor_to_tensor(t: torch.Tensor) -> torch.Tensor:
    shape = tuple(t.shape)
    if t.dim() == 4:
        raise ImageError(f"The tensor has 4 dimensions {shape}, a batch; {_BATCH_HINT}.")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    elif t.dim() == 3 and t.shape[0] not in (1, 3, 4) and t.shape[-1] in (1, 3, 4):
        t = t.permute(2, 0, 1)
    elif t.dim() != 3 or t.shape[0] not in (1, 3, 4):
        raise ImageError(f"The tensor has shape {shape}; valid layouts are {_TENSOR_LAYOUTS}.")
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise ImageError(f"The tensor has shape {shape}; height and width must both be at least 1.")
    if t.shape[0] == 4:
        t = t[:3]
    if t.dtype == torch.uint8:
        t = t.to(torch.float32) / 255
    elif t.dtype == getattr(torch, "uint16", None):  # torch.uint16 exists from torch 2.3.
        t = t.to(torch.float32) / 65535
    elif t.dtype == torch.bool:
        t = t.to(torch.float32)
    elif t.is_floating_point():
        t = t.to(torch.float32)
        lo, hi = (v.item() for v in torch.aminmax(t))
        if not (lo >= 0.0 and hi <= 1.0):  # Written so that NaN fails too.
            raise ImageError(
                f"The tensor has float values in [{lo:g}, {hi:g}]; float images must lie in [0, 1] — {_NORMALISE_HINT}."
            )
    else:
        raise ImageError(
            f"The tensor has dtype {t.dtype}; valid dtypes are {_TENSOR_DTYPES} (for 0-255 integers use "
            "t.to(torch.uint8))."
        )
    if t.shape[0] == 1:
        return t.repeat(3, 1, 1)
    return t if t.is_contiguous() else t.contiguous()


def _pixels_from_message(message: str) -> int | None:
    # DecompressionBombError carries no size attribute; its message is "Image size (N pixels) exceeds limit ...".
    match = re.search(r"\((\d+) pixels\)", message)
    return int(match.group(1)) if match else None


def _bomb_error(name: str, pixels: int | None, dims: str = "") -> ImageError:
    count = f"{pixels:,} pixels{dims}" if pixels is not None else "more pixels than twice the limit"
    limit = Image.MAX_IMAGE_PIXELS
    suggestion = pixels if pixels is not None else "a larger number"
    return ImageError(
        f"Image file '{name}' has {count}, more than PIL.Image.MAX_IMAGE_PIXELS = {limit:,}, Pillow's guard against "
        f"decompression bombs; if you trust the file, raise the limit first, e.g. "
        f"PIL.Image.MAX_IMAGE_PIXELS = {suggestion}, or set it to None to disable the check."
    )
