"""Command-line values and options shared by the ``fpn-zoo`` subcommands.

They import nothing heavy, so building the parser keeps ``fpn-zoo --help`` instant.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "add_fast_argument",
    "add_weights_arguments",
    "check_weights_tag",
    "fast_setting",
    "int_at_least",
    "split_size",
]

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type accepting integers ``>= minimum``, with a message naming the bound.

    Examples:
        >>> int_at_least(1)("3")
        3
        >>> int_at_least(1)("0")
        Traceback (most recent call last):
        ...
        argparse.ArgumentTypeError: '0' must be an integer >= 1
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {minimum}")
        return value

    return parse


def split_size(text: str, example: str = "800x800") -> tuple[int, int]:
    """``"800x1216"`` -> ``(800, 1216)``: height and width, before any range check (callers apply their own).

    Raises:
        ValueError: ``text`` is not two integers joined by ``x``.

    Examples:
        >>> split_size(" 512 X 640 ")
        (512, 640)
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not HxW; give height x width in pixels, e.g. {example}")
    return int(match[1]), int(match[2])


def add_weights_arguments(parser: argparse.ArgumentParser, *, random_init: bool = False) -> None:
    """``--weights PATH`` or ``--pretrained [TAG]`` (exclusive), as ``create_model(weights=, pretrained=)`` takes them;
    with ``random_init``, also ``--random-init`` (the command then uses the default weights when given none).

    Check the tag with ``check_weights_tag`` once parsed: with ``nargs="?"`` a positional argument written after
    ``--pretrained`` is taken as its tag, and only the command knows what to suggest.
    """
    source = parser.add_mutually_exclusive_group()
    default = "the model's default weights" if random_init else "random init"
    source.add_argument("--weights", type=Path, help=f"exported folder or .safetensors file (default: {default})")
    source.add_argument(
        "--pretrained", nargs="?", const=True, default=False, metavar="TAG",
        help="the model's weights from weights_manifest.json: the default entry, or the one tagged TAG (a dataset "
        "alone, e.g. coco, picks that dataset's default)",
    )  # fmt: skip
    if random_init:
        source.add_argument(
            "--random-init", action="store_true",
            help="no weights: a randomly initialised model, to check the pipeline (its detections mean nothing)",
        )  # fmt: skip


def add_fast_argument(parser: argparse.ArgumentParser) -> None:
    """``--fast on|off|bf16``: the fast inference path (``create_model(fast=...)``), on by default."""
    parser.add_argument(
        "--fast", choices=("on", "off", "bf16"), default="on",
        help="inference path: on = BatchNorm folded into the convolutions, channels-last where faster, inference mode "
        "(same detections to float rounding); off = the plain model; bf16 = on plus bf16 autocast, native bf16 "
        "hardware only, detections move (default: on)",
    )  # fmt: skip


def fast_setting(value: str) -> bool | str:
    """``--fast``'s value as ``create_model(fast=...)`` takes it.

    Examples:
        >>> fast_setting("on"), fast_setting("off"), fast_setting("bf16")
        (True, False, 'bf16')
    """
    return {"on": True, "off": False}.get(value, value)


def check_weights_tag(pretrained: bool | str, hint: str = "") -> None:
    """Refuse a ``--pretrained`` value that cannot be a weights tag (the manifest's tag rule).

    Raises:
        ValueError: Names the value and how to write a tag.

    Examples:
        >>> check_weights_tag("coco_tv")
        >>> check_weights_tag("photo.jpg")
        Traceback (most recent call last):
        ...
        ValueError: --pretrained 'photo.jpg' is not a weights tag; write --pretrained=TAG.
    """
    from fpn_zoo.weights.manifest import TAG_PATTERN

    if isinstance(pretrained, str) and not TAG_PATTERN.match(pretrained):
        raise ValueError(f"--pretrained {pretrained!r} is not a weights tag; {hint}write --pretrained=TAG.")
