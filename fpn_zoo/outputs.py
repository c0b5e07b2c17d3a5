"""Where a command writes: never over a file the user already has, unless they said so.

Commands that write results (``predict``, ``eval``, ``export``) name the files they would write and call
[`claim_outputs`][fpn_zoo.outputs.claim_outputs] first. With the command's default location a used one is
sidestepped to a numbered sibling (``predictions`` -> ``predictions-2``, as YOLO's ``runs/detect/predict2`` and
mmdetection's timestamped work dirs do), and the console says so; with a location the user chose, a file that would
be replaced is refused, naming it, unless ``--overwrite`` was given.

Examples:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "predictions").mkdir()
    >>> _ = (folder / "predictions" / "a.png").write_bytes(b"")
    >>> free_sibling(folder / "predictions").name
    'predictions-2'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from fpn_zoo.voice import option

__all__ = ["OutputExistsError", "claim_outputs", "free_sibling"]


class OutputExistsError(FileExistsError):
    """Writing would replace files the user did not ask to replace; the message names them and the choices."""


def free_sibling(path: Path, *, file: bool = False) -> Path:
    """The first free name after ``path`` in its numbered series: ``runs/cells`` -> ``runs/cells-2``, ``cells-2`` ->
    ``cells-3``; a ``file`` keeps its suffix (``m.json`` -> ``m-2.json``), a folder's dots are part of its name.

    Examples:
        >>> free_sibling(Path("no/such/run.v1")).name, free_sibling(Path("no/such/m.json"), file=True).name
        ('run.v1-2', 'm-2.json')
        >>> free_sibling(Path("no/such/cells-2")).name
        'cells-3'
    """
    stem, suffix = (path.stem, path.suffix) if file else (path.name, "")
    numbered = re.fullmatch(r"(.+)-(\d+)", stem)
    base, n = (numbered[1], int(numbered[2]) + 1) if numbered else (stem, 2)
    while True:
        candidate = path.with_name(f"{base}-{n}{suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def _shown(paths: Sequence[Path]) -> str:
    listed = ", ".join(str(p) for p in paths[:3])
    return listed + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")


def claim_outputs(
    location: Path,
    files_in: Callable[[Path], Sequence[Path]],
    *,
    chosen: bool,
    overwrite: bool,
    file: bool = False,
    what: str = "out",
) -> Path:
    """The location to write to: ``location`` when nothing in it would be replaced, else a decision.

    Args:
        location: Folder or file the command writes (its ``--out``).
        files_in: The files the command would write at a given location (``location`` or a numbered sibling).
        chosen: Whether the user gave ``location``; a default location that is used is replaced by the first free
            numbered sibling, and the change is printed.
        overwrite: The user asked to replace existing files (``--overwrite``).
        file: ``location`` is a file (its numbered siblings keep its suffix), not a folder.
        what: The option naming the location, for messages (``out`` -> ``--out`` / ``out=``).

    Returns:
        Where to write.

    Raises:
        OutputExistsError: ``chosen`` and files would be replaced without ``overwrite``.
    """
    taken = [p for p in files_in(location) if p.exists()]
    if not taken or overwrite:
        return location
    sibling = free_sibling(location, file=file)
    if not chosen:
        print(f"{location} holds earlier results ({_shown(taken)}): writing to {sibling} instead.")
        return sibling
    raise OutputExistsError(
        f"{option(what, str(location))} would replace {_shown(taken)} from an earlier run. Pass "
        f"{option('overwrite', True)} to replace them, or write elsewhere, e.g. {option(what, str(sibling))}."
    )
