"""Messages that name options the way their reader passes them: keyword arguments from Python, flags from the CLI.

An error raised deep in the library ("pass ``weights=PATH``") reaches two kinds of readers: a Python user, who
passes keyword arguments, and a command-line user, who passes flags and for whom ``weights=PATH`` is advice they
cannot follow. Messages therefore name options through [`option`][fpn_zoo.voice.option] (and whole phrases
through [`say`][fpn_zoo.voice.say]), which render in the voice of whoever is listening: Python by default, the
command line inside [`cli_voice`][fpn_zoo.voice.cli_voice], which ``fpn-zoo`` enters around each command with the
flags that command has, so that a message offers only the flags the reader can type
([`offers`][fpn_zoo.voice.offers]).

Examples:
    >>> option("weights", placeholder="PATH")
    'weights=PATH'
    >>> with cli_voice("fpn-zoo predict", {"--weights", "--device"}):
    ...     option("weights", placeholder="PATH"), option("device", "cpu")
    ('--weights PATH', '--device cpu')
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["cli_voice", "command", "in_cli", "offers", "option", "say"]


@dataclass(frozen=True)
class _Listener:
    command: str  # "fpn-zoo predict"
    flags: frozenset[str]  # every option string the command accepts


_LISTENER: ContextVar[_Listener | None] = ContextVar("fpn_zoo_voice", default=None)

# Keyword arguments whose command-line spelling is not ``--{name with dashes}``: (flag, value it implies or None).
_CLI_SPELLING: dict[str, tuple[str, str | None]] = {
    "box_score_thresh": ("--score-thr", None),
    "out_dir": ("--out", None),
    "pretrained_backbone": ("--init", "backbone"),
}


@contextmanager
def cli_voice(command: str, flags: Collection[str]) -> Iterator[None]:
    """Render messages raised inside the block for the command line: ``command`` with ``flags`` is being run.

    Args:
        command: How the user invoked it, e.g. ``"fpn-zoo predict"``.
        flags: The option strings that command accepts (``--weights``, ``--pretrained``, ...).
    """
    token = _LISTENER.set(_Listener(command, frozenset(flags)))
    try:
        yield
    finally:
        _LISTENER.reset(token)


def in_cli() -> bool:
    """Whether messages are being rendered for the command line."""
    return _LISTENER.get() is not None


def command() -> str | None:
    """The running CLI command (``"fpn-zoo predict"``), ``None`` from Python."""
    listener = _LISTENER.get()
    return None if listener is None else listener.command


def _flag(name: str) -> tuple[str, str | None]:
    return _CLI_SPELLING.get(name, (f"--{name.replace('_', '-')}", None))


def offers(name: str) -> bool:
    """Whether the reader can pass option ``name``: always from Python, from the CLI when the command has its flag.

    Examples:
        >>> offers("pretrained_backbone")
        True
        >>> with cli_voice("fpn-zoo predict", {"--weights"}):
        ...     offers("weights"), offers("pretrained_backbone")
        (True, False)
    """
    listener = _LISTENER.get()
    return listener is None or _flag(name)[0] in listener.flags


def option(name: str, value: object = None, *, placeholder: str | None = None) -> str:
    """Option ``name`` set to ``value`` (or to a ``placeholder`` such as ``PATH``), spelled for the reader.

    From Python a keyword argument (``device='cpu'``, ``weights=PATH``, ``pretrained=True``); from the CLI a flag
    (``--device cpu``, ``--weights PATH``, ``--pretrained``), with the flags whose spelling differs mapped
    (``pretrained_backbone=True`` is ``--init backbone``).

    Examples:
        >>> option("pretrained", "coco_tv"), option("on_invalid", "skip")
        ("pretrained='coco_tv'", "on_invalid='skip'")
        >>> with cli_voice("fpn-zoo train", {"--init", "--on-invalid"}):
        ...     option("pretrained_backbone", True), option("on_invalid", "skip")
        ('--init backbone', '--on-invalid skip')
    """
    if _LISTENER.get() is None:
        shown = placeholder if placeholder is not None else repr(value)
        return f"{name}={shown}"
    flag, implied = _flag(name)
    if implied is not None:
        return f"{flag} {implied}"
    if placeholder is not None:
        return f"{flag} {placeholder}"
    if value is True or value is None:
        return flag
    return f"{flag} {shlex.quote(str(value))}"


def say(python: str, cli: str) -> str:
    """One of two phrasings of the same advice, for the reader: ``python`` by default, ``cli`` from the CLI.

    For advice that is not an option, such as how to list the models.

    Examples:
        >>> say("fpn_zoo.list_models()", "fpn-zoo list")
        'fpn_zoo.list_models()'
    """
    return cli if _LISTENER.get() is not None else python
