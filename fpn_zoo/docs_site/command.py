"""``fpn-zoo docs``: regenerate the site's tables, plot and model pages, or check that they are current."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "docs",
        help="regenerate the docs' model-zoo tables and pages from the manifest and results files",
        description="Regenerate docs/zoo/ (the zoo table, its plot, one page per model) from weights_manifest.json "
        "and docs/results/*.json. With --check, write nothing and exit 1 when the committed pages differ. "
        "Build the site afterwards with `mkdocs build --strict`.",
    )
    parser.add_argument("--check", action="store_true", help="report drift instead of writing (exit 1 on drift)")
    parser.add_argument("--root", default=".", help="repository root holding mkdocs.yml (default: .)")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fpn_zoo.docs_site import check_pages, write_pages

    if args.check:
        problems = check_pages(args.root)
        for problem in problems:
            print(f"drift: {problem}", file=sys.stderr)
        if problems:
            print("Run `fpn-zoo docs` and commit the result.", file=sys.stderr)
            return 1
        print("docs/zoo is up to date with its sources.")
        return 0
    changed = write_pages(args.root)
    print("\n".join(f"wrote {path}" for path in changed) or "docs/zoo was already up to date.")
    return 0
