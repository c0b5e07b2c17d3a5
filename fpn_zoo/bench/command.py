"""``fpn-zoo bench``: argument parsing and output; the work is in runner.py and child.py.

The command family: ``fpn-zoo bench [MODEL_OR_GLOB ...]`` measures latency, memory, FLOPs and load time, and a first
positional naming one of ``MEASUREMENTS`` (``load``, ``train``, ``finetune``, ``fast-check``) hands the rest of the
command line to that measurement's own parser (no model is named like one). Imports nothing heavy at module level:
``fpn_zoo.cli`` registers this command while building its parser, and ``fpn-zoo --help`` must stay instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from pathlib import Path
from typing import Any, NamedTuple

from fpn_zoo.argtypes import int_at_least
from fpn_zoo.bench.settings import MIN_REPORTABLE_RUNS, BenchSettings, available_cores, parse_size, size_str
from fpn_zoo.registry import UnknownModelError, get_model_config, list_models

__all__ = ["INCONSISTENT_EXIT", "MEASUREMENTS", "Measurement", "add_parser", "resolve_models", "run"]

INCONSISTENT_EXIT = 3  # apart from 1 (a job failed) and 2 (bad input), so scripts can tell a noisy machine

_MODES = {"off": (False,), "on": (True,), "both": (False, True)}
_CUDA_MATRIX = {"precisions": ("fp32", "bf16"), "batches": (1, 8), "channels_last": "both", "compile": "both"}


class Measurement(NamedTuple):
    """A member of the ``fpn-zoo bench`` family: its module has ``parse_args(argv, prog, parser_class)`` and
    ``run(args) -> int``, and is imported only when chosen."""

    module: str
    help: str


MEASUREMENTS = {
    "load": Measurement("fpn_zoo.bench.load_command", 'create_model("fpn_r50_coco", pretrained=True) load time and '
                        "peak RSS next to torchvision's load_state_dict, through the Hub cold/warm path"),
    "train": Measurement("fpn_zoo.bench.train_command", "training images/s of the engine next to torchvision's plain "
                         "loop (and under torchrun)"),
    "finetune": Measurement("fpn_zoo.bench.finetune", "fine-tune each neck on BCCD under one budget; val AP before "
                            "and after"),
    "fast-check": Measurement("fpn_zoo.bench.fast_check", "does the fast inference path keep a trained model's "
                              "COCO AP? AP and per-box differences against the plain path"),
    "compare": Measurement("fpn_zoo.bench.compare", "do two runs (e.g. a repeated one) rank the models in the same "
                           "order, apart from ties? exit 3 on a contradicted pair"),
}  # fmt: skip


def _family_epilog() -> str:
    lines = ["other measurements of the family (the first argument names one; each has its own --help):"]
    for name, measurement in MEASUREMENTS.items():
        lines += textwrap.wrap(measurement.help, 78, initial_indent=f"  {name:<12}", subsequent_indent=" " * 14)
    return "\n".join(lines)


def _dispatch_measurements(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` hand ``NAME ...`` to measurement ``NAME``'s own parser when NAME is the first argument.

    argparse cannot put optional subcommands beside a positional list of models, so the bench parser's
    ``parse_known_args`` (what the ``fpn-zoo`` parser calls for a subcommand) looks at the first argument first.
    """
    parse_models = parser.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        args = list(sys.argv[1:] if args is None else args)
        if not args or args[0] not in MEASUREMENTS:
            return parse_models(args, namespace)
        module = importlib.import_module(MEASUREMENTS[args[0]].module)
        own = module.parse_args(args[1:], prog=f"{parser.prog} {args[0]}", parser_class=type(parser))
        # The fpn-zoo parser copies these into its namespace; the measurement runs on its own namespace.
        return argparse.Namespace(measurement=args[0], handler=lambda _: module.run(own)), []

    parser.parse_known_args = parse_known_args  # type: ignore[method-assign]


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(parse_size(part) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _csv(choices: tuple[str, ...]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        if not values or set(values) - set(choices):
            raise argparse.ArgumentTypeError(f"{text!r}: give a comma-separated subset of {', '.join(choices)}")
        return values

    return parse


def _batches(text: str) -> tuple[int, ...]:
    return tuple(int_at_least(1)(part.strip()) for part in text.split(","))


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``fpn-zoo`` subcommand parser (with its handler)."""
    p = subparsers.add_parser(
        "bench",
        help="latency, memory, FLOPs and load time of models next to torchvision/effdet references; writes JSON",
        description="Measure zoo models next to torchvision's fasterrcnn_resnet50_fpn (and the FPN/BiFPN necks next "
        "to torchvision's and effdet's) in one run: latency of every model and the reference in one process per "
        "size, in shuffled rounds, ranked with 95% intervals and checked against the FLOPs; FLOPs, memory and "
        "load in one fresh process per model. Writes versioned JSON (docs/bench-results.md) and a markdown table "
        "beside it. See docs/benchmarks.md for durations. The other measurements of the family follow.",
        usage=f"%(prog)s [MODEL_OR_GLOB ...] [options]\n       %(prog)s {{{','.join(MEASUREMENTS)}}} [options]",
        epilog=_family_epilog(),
        formatter_class=_FamilyHelpFormatter,
    )
    p.add_argument("models", nargs="*", metavar="MODEL_OR_GLOB", help="model names or globs like 'bifpn_*' "
                   "(default: all registered models)")  # fmt: skip
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=((512, 512), (800, 1216)),
        metavar="HxW[,HxW...]",
        help="image sizes, each side a multiple of 32 from 64 to 4096 (default: 512x512,800x1216)",
    )
    p.add_argument(
        "--runs",
        type=int_at_least(1),
        default=MIN_REPORTABLE_RUNS,
        help=f"timed runs per side and combination, >= {MIN_REPORTABLE_RUNS} unless --quick (default 10)",
    )
    p.add_argument("--warmup", type=int_at_least(0), default=1, help="untimed runs per side before timing (default 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--precisions", type=_csv(("fp32", "bf16")), help="fp32[,bf16] (default: fp32; cuda: fp32,bf16)")
    p.add_argument("--batches", type=_batches, help="images per forward, e.g. 1,8 (default: 1; cuda: 1,8)")
    p.add_argument("--channels-last", choices=tuple(_MODES), help="weights in channels_last memory format: off, on "
                   "or both (default: off; cuda: both)")  # fmt: skip
    p.add_argument("--compile", choices=tuple(_MODES), help="torch.compile the detectors: off, on or both "
                   "(default: off; cuda: both)")  # fmt: skip
    p.add_argument(
        "--load-runs", type=int_at_least(1), default=5, help="cold and warm weight loads per side (default 5)"
    )
    p.add_argument(
        "--fast", choices=("on", "off"), default="on",
        help="also time each model's fast inference path (create_model(fast=True): BatchNorm folded, channels-last "
        "where faster, inference mode) beside the eager model, in the same interleaved rounds (default: on)",
    )  # fmt: skip
    p.add_argument("--skip-load", action="store_true", help="leave the load-time measurement out")
    p.add_argument("--skip-necks", action="store_true", help="leave the neck rows out")
    p.add_argument(
        "--threads", type=int_at_least(1), help="torch threads of every measuring process (default: all cores)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and images (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke test: allows --runs below 10; the JSON says quick")
    p.add_argument(
        "--allow-inconsistent", action="store_true",
        help="exit 0 even when the consistency check flags the run (a model that computes all of another and more, "
        "e.g. panet_r50_coco over fpn_r50_coco, came out faster beyond the 95%% intervals); the JSON stays flagged "
        f"and `fpn-zoo docs` refuses it. Without it such a run exits {INCONSISTENT_EXIT}",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="results JSON; the .md goes beside it "
                   "(default: docs/results/bench-{device}-{YYYYMMDDTHHMM}.json)")  # fmt: skip
    p.set_defaults(handler=run)
    _dispatch_measurements(p)
    return p


class _FamilyHelpFormatter(argparse.HelpFormatter):
    """Wraps the description as usual but keeps the epilog's list of measurements one per line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("other measurements"):
            return text
        return super()._fill_text(text, width, indent)


def resolve_models(patterns: list[str]) -> list[str]:
    """Model names for the command line's ``MODEL_OR_GLOB`` arguments, in order, without repeats (all if none).

    Raises:
        UnknownModelError: A name that is not registered; the message lists the valid names.
        ValueError: A glob that matches no model.

    Examples:
        >>> resolve_models(["fpn_r50_coco", "*_r50_*"])[:2]
        ['fpn_r50_coco', 'augfpn_r50_coco']
    """
    if not patterns:
        return list_models()
    valid = ", ".join(list_models())
    names: list[str] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            matched = list_models(pattern)
            if not matched:
                raise ValueError(f"No model matches {pattern!r}. Valid names: {valid}.")
        else:
            try:
                get_model_config(pattern)
            except UnknownModelError as err:
                raise UnknownModelError(f"{err.args[0]} Valid names: {valid}.") from None
            matched = [pattern]
        names += [n for n in matched if n not in names]
    return names


def _check_device(device: str) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"--device {device}: CUDA is not available here ({why}); use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0 ...)")


def _settings(args: argparse.Namespace) -> BenchSettings:
    cuda = args.device.startswith("cuda")

    def pick(value: Any, key: str, cpu: Any) -> Any:
        return value if value is not None else (_CUDA_MATRIX[key] if cuda else cpu)

    threads = args.threads or available_cores()
    return BenchSettings(
        sizes=args.sizes, runs=args.runs, warmup=args.warmup, device=args.device,
        precisions=pick(args.precisions, "precisions", ("fp32",)), batches=pick(args.batches, "batches", (1,)),
        channels_last=_MODES[pick(args.channels_last, "channels_last", "off")],
        compile=_MODES[pick(args.compile, "compile", "off")], load_runs=args.load_runs, skip_load=args.skip_load,
        skip_necks=args.skip_necks, threads=threads, quick=args.quick, seed=args.seed, fast=args.fast == "on",
    )  # fmt: skip


def _command(models: list[str], s: BenchSettings, out: Path, allow_inconsistent: bool = False) -> list[str]:
    """The command line that repeats this run, every option explicit."""
    modes = {v: k for k, v in _MODES.items()}
    flags = ["--sizes", ",".join(size_str(x) for x in s.sizes), "--runs", str(s.runs), "--warmup", str(s.warmup),
             "--device", s.device, "--precisions", ",".join(s.precisions), "--batches", ",".join(map(str, s.batches)),
             "--channels-last", modes[s.channels_last], "--compile", modes[s.compile], "--load-runs",
             str(s.load_runs), "--threads", str(s.threads), "--seed", str(s.seed), "--fast", "on" if s.fast else "off",
             "--out", str(out)]  # fmt: skip
    switches = (("--skip-load", s.skip_load), ("--skip-necks", s.skip_necks), ("--quick", s.quick),
                ("--allow-inconsistent", allow_inconsistent))  # fmt: skip
    return ["fpn-zoo", "bench", *models, *flags, *(flag for flag, on in switches if on)]


def run(args: argparse.Namespace) -> int:
    """Run ``fpn-zoo bench``: 0 when every job succeeded, 1 when some failed, ``INCONSISTENT_EXIT`` when the ranking
    contradicts the FLOPs (unless ``--allow-inconsistent``); the results are written either way."""
    from fpn_zoo.bench.runner import check_out_path, default_out, run_bench

    misplaced = [name for name in args.models if name in MEASUREMENTS]
    if misplaced:
        raise ValueError(f"{misplaced[0]!r} is a measurement of the bench family, not a model: give it first, "
                         f"`fpn-zoo bench {misplaced[0]} ...` (see `fpn-zoo bench {misplaced[0]} --help`)")  # fmt: skip
    names = resolve_models(args.models)
    settings = _settings(args)
    _check_device(settings.device)
    out = check_out_path(args.out or default_out(settings.device))
    allow = getattr(args, "allow_inconsistent", False)
    bench = run_bench(names, settings, out, _command(args.models, settings, out, allow))
    print(bench.markdown_path.read_text())
    print(f"Wrote {bench.json_path} and {bench.markdown_path}.")
    if bench.failures:
        print(f"fpn-zoo: error: {len(bench.failures)} job(s) failed: {'; '.join(bench.failures)}; see 'error' in "
              f"{bench.json_path}", file=sys.stderr)  # fmt: skip
        return 1
    consistency = bench.results.get("consistency") or {}
    if not consistency.get("ok", True):
        from fpn_zoo.bench.ranking import describe_violations

        for violation in consistency["violations"]:
            print(f"fpn-zoo bench: inconsistent: {violation['message']}", file=sys.stderr)
        level = "warning" if allow else "error"
        print(f"fpn-zoo: {level}: the run is flagged ({describe_violations(consistency)}); the machine was too noisy "
              f"to rank these models. {bench.json_path} records it and `fpn-zoo docs` will refuse it: rerun on a "
              "quiet machine" + (" (exiting 0: --allow-inconsistent)" if allow else ""), file=sys.stderr)  # fmt: skip
        return 0 if allow else INCONSISTENT_EXIT
    return 0
