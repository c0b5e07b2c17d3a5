"""The ``fpn-zoo`` command line: ``list``, ``info``, ``predict``, ``convert``, ``download``, ``export``, ``publish``,
``train``, ``eval``, ``bench``, ``docs``.

Example:
    .. code-block:: console

        $ fpn-zoo list 'bifpn_*'
        $ fpn-zoo info fpn_r50_coco --input-size 800x1216
        $ fpn-zoo convert --from torchvision fasterrcnn_resnet50_fpn_coco-258fb6c6.pth --model fpn_r50_coco --out w/
        $ fpn-zoo predict photo.jpg --model fpn_r50_coco --weights w/ --score-thr 0.5
        $ fpn-zoo download fpn_r50_coco            # prefetch verified weights for offline use
        $ fpn-zoo export --model fpn_r50_coco --checkpoint w/ --out export/ --tag coco_tv
        $ fpn-zoo publish export/ --repo-id acme/fpn_r50_coco --dry-run
        $ fpn-zoo bench 'bifpn_*' --sizes 512x512       # latency, memory, FLOPs, load time vs torchvision

Expected failures (unknown model, bad file, bad option value) print one line ``fpn-zoo: error: ...`` on stderr and
exit with status 2. Heavy modules (torch, timm) are imported by the commands, so ``fpn-zoo --help`` stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

from fpn_zoo.argtypes import (
    add_fast_argument,
    add_weights_arguments,
    check_weights_tag,
    fast_setting,
    int_at_least,
    split_size,
)
from fpn_zoo.bench.command import add_parser as add_bench_command
from fpn_zoo.docs_site.command import add_parser as add_docs_command
from fpn_zoo.engine.eval_command import add_parser as add_eval_command
from fpn_zoo.engine.train_command import add_parser as add_train_command
from fpn_zoo.publish.commands import add_export_command, add_publish_command, add_publish_converted_command
from fpn_zoo.registry import UnknownModelError, get_model_config, list_models
from fpn_zoo.voice import cli_voice
from fpn_zoo.weights.manifest import CONVERTERS as CONVERTER_NAMES

__all__ = ["main"]

PROG = "fpn-zoo"
_PREDICTIONS = "predictions"  # predict's default output folder


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one-line error format (argparse's own prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


def _input_size(text: str) -> tuple[int, int]:
    from fpn_zoo.inspect_model import MAX_FLOPS_SIDE

    try:
        height, width = split_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if not (1 <= height <= MAX_FLOPS_SIDE and 1 <= width <= MAX_FLOPS_SIDE):
        raise argparse.ArgumentTypeError(
            f"{text!r}: height and width must be integers from 1 to {MAX_FLOPS_SIDE}, e.g. 800x800"
        )
    return height, width


def _score_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a score in [0, 1], e.g. 0.5") from None
    if not 0.0 <= value <= 1.0:  # written so that NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is outside [0, 1]; give a score in [0, 1], e.g. 0.5")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``fpn-zoo`` argument parser with its subcommands.

    Example:
        >>> build_parser().parse_args(["info", "fpn_r50_coco", "--input-size", "64x96"]).input_size
        (64, 96)
    """
    parser = _Parser(prog=PROG, description="Faster R-CNN detectors with FPN, PANet, BiFPN and AugFPN necks.")
    commands = "{list,info,predict,convert,download,export,publish,publish-converted,train,eval,bench,docs}"
    sub = parser.add_subparsers(dest="command", required=True, metavar=commands)

    p = sub.add_parser("list", help="list the models with backbone, neck and parameter count")
    p.add_argument("pattern", nargs="?", help="shell-style filter such as 'bifpn_*'; a plain word matches anywhere")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument(
        "--pretrained", action="store_true",
        help="only the models with weights to load (published, or converted from an upstream checkpoint)",
    )  # fmt: skip
    p.set_defaults(handler=_cmd_list)

    p = sub.add_parser("info", help="architecture, parameters, GFLOPs, label space and weights of one model")
    p.add_argument("name", help="model name, e.g. fpn_r50_coco")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--input-size", type=_input_size, default=(800, 800), metavar="HxW",
        help="image size at which FLOPs are counted (default: 800x800)",
    )  # fmt: skip
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP count (one CPU forward pass)")
    p.add_argument(
        "--weights", type=Path, metavar="PATH",
        help="an exported or converted folder: show the options recorded in its config.json (inference settings)",
    )  # fmt: skip
    p.set_defaults(handler=_cmd_info)

    p = sub.add_parser(
        "predict",
        help="detect objects in images with a model's weights; writes <stem>.png and <stem>.json per image",
        description="Detect objects in images. Without --weights the model's default weights are used "
        "(`fpn-zoo list --pretrained` lists the models that have some; the first use downloads and verifies them). "
        "Writes the image with its boxes as <stem>.png and the detections as <stem>.json.",
    )
    p.add_argument("images", nargs="*", type=Path, help="image files (default: the packaged sample image)")
    p.add_argument("--model", required=True, help="model name, e.g. fpn_r50_coco")
    add_weights_arguments(p, random_init=True)
    p.add_argument(
        "--out", type=Path, default=None,
        help=f"output folder (default: ./{_PREDICTIONS}, or the first free {_PREDICTIONS}-2, -3, ... when it holds "
        "earlier results)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace earlier results in --out (default: refuse)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    add_fast_argument(p)
    p.add_argument(
        "--score-thr", type=_score_threshold, default=0.5, metavar="T",
        help="keep detections with score >= T, in [0, 1] (default: 0.5)",
    )  # fmt: skip
    p.add_argument("--min-size", type=int_at_least(1), help="resize bound: shorter image side (default: the model's)")
    p.add_argument("--max-size", type=int_at_least(1), help="resize bound: longest image side (default: the model's)")
    p.set_defaults(handler=_cmd_predict)

    p = sub.add_parser(
        "convert",
        help="convert an upstream checkpoint (torchvision, mmdetection, official ConvNeXt) into an fpn_zoo folder",
        description="Convert an upstream Faster / Mask R-CNN checkpoint into model.safetensors + config.json. The "
        "target model is read off the tensors (printed); the inference settings the weights were trained with "
        "(RoIAlign, anchors, box filters) are recorded in config.json. Mask branches are dropped and listed.",
    )
    p.add_argument(
        "--from", dest="source_format", required=True, choices=sorted(CONVERTER_NAMES),
        help="which codebase wrote the checkpoint",
    )  # fmt: skip
    p.add_argument("src", type=Path, help="upstream checkpoint, e.g. faster_rcnn_r50_fpn_1x_coco_20200130-047c8118.pth")
    p.add_argument("--model", help="target model; default: the one the tensors fit (a model that does not fit fails)")
    p.add_argument("--out", type=Path, required=True, help="new folder receiving model.safetensors and config.json")
    p.add_argument(
        "--frozen-bn-eps", type=float, default=None,
        help="BatchNorm eps the weights were trained with (default: the converter's: 0.0 for torchvision's COCO_V1 "
        "v1 files, else 1e-5)",
    )  # fmt: skip
    p.set_defaults(handler=_cmd_convert)
    p = sub.add_parser("download", help="prefetch a model's verified weights for offline use; says what to copy")
    p.add_argument("name", help="model name, e.g. fpn_r50_coco")
    p.add_argument("--tag", help="weights tag in weights_manifest.json (default: the model's default weights)")
    p.set_defaults(handler=_cmd_download)

    add_export_command(sub)
    add_publish_command(sub)
    add_publish_converted_command(sub)
    train = add_train_command(sub)
    train.set_defaults(handler=_cmd_train)
    evaluate = add_eval_command(sub)
    evaluate.set_defaults(handler=_cmd_eval)
    add_bench_command(sub)  # sets its own handler, fpn_zoo.bench.command.run
    add_docs_command(sub)  # fpn_zoo.docs_site.command.run
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from fpn_zoo.engine.train_command import run

    return run(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from fpn_zoo.engine.eval_command import run

    return run(args)


def _cmd_list(args: argparse.Namespace) -> int:
    from fpn_zoo.inspect_model import count_parameters

    pattern = args.pattern
    if pattern is not None and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    from fpn_zoo.weights.manifest import load_manifest

    manifest = load_manifest()
    rows = []
    for name in list_models(pattern, pretrained=args.pretrained):
        config = get_model_config(name)
        default = manifest.default_entry(name)
        rows.append({
            "name": name,
            "backbone": config.backbone,
            "timm_backbone": config.backbone_spec.timm_name,
            "neck": config.neck,
            "num_params": count_parameters(config),
            "weights": [e.tag for e in manifest.entries(name) if e.available],
            "default_weights": None if default is None else default.tag,
        })  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        what = f"matches {args.pattern!r}" if args.pattern else "is"
        with_weights = " with weights" if args.pretrained else ""
        print(f"No model {what}{with_weights}; `{PROG} list` shows all {len(list_models())}.")
        return 0
    table = [("name", "backbone", "neck", "params (M)", "weights (default first)")]
    for r in rows:
        tags = sorted(r["weights"], key=lambda t: t != r["default_weights"])
        weights = ", ".join(tags) if tags else "none (random init; see `info`)"
        backbone = f"{r['backbone']} ({r['timm_backbone']})"
        table.append((r["name"], backbone, r["neck"], f"{r['num_params'] / 1e6:.2f}", weights))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]:>{widths[3]}}  {row[4]}")
    plural = "s" if len(rows) != 1 else ""
    print(f"{len(rows)} model{plural}; params with frozen BatchNorm, as torchvision counts them. `{PROG} info NAME`")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    config = get_model_config(args.name)  # an unknown name fails before torch is imported
    from fpn_zoo.inspect_model import format_report, model_report

    if args.weights is not None:
        from fpn_zoo.weights.checkpoint import read_checkpoint

        saved = read_checkpoint(args.weights).config
        if saved is None:
            raise ValueError(f"{args.weights} has no config.json: nothing records its options.")
        if saved.name != config.name:
            raise ValueError(
                f"{args.weights} was exported for {saved.name}; run `{PROG} info {saved.name} --weights ...`."
            )
        config = saved

    data = model_report(config, input_size=None if args.no_flops else args.input_size)
    print(json.dumps(data, indent=2) if args.json else format_report(data))
    return 0


def _unique_stems(paths: list[Path]) -> list[str]:
    taken: set[str] = set()
    stems = []
    for path in paths:
        stem, n = path.stem, 1
        candidate = stem
        # Compared lower-cased: on case-insensitive file systems (macOS, Windows) A.png and a.png are one file.
        while candidate.lower() in taken:
            candidate, n = f"{stem}_{n}", n + 1
        taken.add(candidate.lower())
        stems.append(candidate)
    return stems


def _predict_weights(args: argparse.Namespace) -> tuple[bool | str, str | None]:
    """``--pretrained`` as ``create_model`` takes it (the model's default weights unless told otherwise), and a
    notice for the console: which weights, or a warning (starting ``fpn-zoo: warning:``)."""
    from fpn_zoo.weights.manifest import load_manifest
    from fpn_zoo.weights.resolve import WeightsNotAvailableError, describe_available

    if args.weights is not None or args.random_init:
        warning = (
            f"{PROG}: warning: --random-init: {args.model} is RANDOMLY INITIALISED and its detections are "
            "meaningless (a check of the pipeline, not of the model)."
        )
        return False, warning if args.random_init else None
    if args.pretrained is not False:
        return args.pretrained, None
    default = load_manifest().default_entry(args.model)
    if default is None:
        raise WeightsNotAvailableError(
            f"{args.model} has no trained weights to predict with. Train it on your data (`{PROG} train --help`), or: "
            f"{describe_available(args.model)}"
        )
    where = "from the Hub" if default.status == "published" else f"converted from {default.upstream.converter}"
    ap = "" if default.coco_box_ap is None else f", COCO box AP {default.coco_box_ap:g}"
    return True, f"Weights: {args.model}'s default, {default.tag} ({where}{ap}); the first use downloads them once."


def _prediction_files(folder: Path, stems: list[str]) -> list[Path]:
    return [folder / f"{stem}{suffix}" for stem in stems for suffix in (".png", ".json")]


def _cmd_predict(args: argparse.Namespace) -> int:
    get_model_config(args.model)  # an unknown name fails before any file is touched or torch imported
    check_weights_tag(args.pretrained, "list images before --pretrained, or ")
    paths: list[Path] = list(args.images)
    for path in paths:  # fail before anything heavy is imported or built, not after half the images
        if not path.is_file():
            what = "is a folder, not an image file" if path.is_dir() else "does not exist"
            raise FileNotFoundError(f"Image '{path}' {what}; give image files (JPEG, PNG, ...).")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {str(args.out)!r} exists and is not a folder.")
    import torch

    from fpn_zoo.drawing import draw_detections, save_png
    from fpn_zoo.factory import create_model, resolve_device
    from fpn_zoo.images import load_image, sample_image_path
    from fpn_zoo.outputs import claim_outputs
    from fpn_zoo.weights.resolve import weights_label

    device = resolve_device(args.device)
    pretrained, notice = _predict_weights(args)
    if not paths:
        paths = [sample_image_path()]
        print(f"No image given: running on the packaged sample image {paths[0]}.")
    stems = _unique_stems(paths)
    out = claim_outputs(
        args.out or Path(_PREDICTIONS),
        lambda folder: _prediction_files(folder, stems),
        chosen=args.out is not None,
        overwrite=args.overwrite,
    )
    if notice is not None:
        print(notice, file=sys.stderr if notice.startswith(f"{PROG}: warning:") else sys.stdout)
    overrides: dict[str, Any] = {"box_score_thresh": args.score_thr}
    for key in ("min_size", "max_size"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    model = create_model(
        args.model, weights=args.weights, pretrained=pretrained, device=device, fast=fast_setting(args.fast),
        **overrides,
    )  # fmt: skip
    categories = model.config.categories
    out.mkdir(parents=True, exist_ok=True)
    for path, stem in zip(paths, stems, strict=True):
        image = load_image(path)
        with torch.inference_mode():
            det = model([image.to(device)])[0]
        boxes, scores, labels = det["boxes"].cpu(), det["scores"].cpu().tolist(), det["labels"].cpu().tolist()
        names = [categories[i] if 0 <= i < len(categories) else f"class_{i}" for i in labels]
        detections = [
            {"box": [round(v, 2) for v in box], "score": round(score, 4), "label": label, "label_name": name}
            for box, score, label, name in zip(boxes.tolist(), scores, labels, names, strict=True)
        ]
        png, record_path = out / f"{stem}.png", out / f"{stem}.json"
        captions = [f"{n} {s:.2f}" for n, s in zip(names, scores, strict=True)]
        save_png(draw_detections(image, boxes, labels, captions), png)
        record = {
            "image": str(path),
            "width": image.shape[2],
            "height": image.shape[1],
            "model": args.model,
            "weights": weights_label(args.weights, pretrained),
            "score_thr": args.score_thr,
            "detections": detections,
        }
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        found = ", ".join(f"{n} {s:.2f}" for n, s in zip(names[:5], scores[:5], strict=False))
        more = f", ... ({len(names)} in all)" if len(names) > 5 else ""
        print(f"{path}: {len(detections)} detection(s) with score >= {args.score_thr:g}"
              f"{': ' + found + more if names else ''} -> {png}, {record_path}")  # fmt: skip
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from fpn_zoo.weights.checkpoint import CONFIG_FILENAME, WEIGHTS_FILENAME
    from fpn_zoo.weights.convert import convert_checkpoint

    report = convert_checkpoint(
        args.src, args.out, source=args.source_format, model=args.model, frozen_bn_eps=args.frozen_bn_eps
    )
    out = report.out_dir
    print(f"Recognised {args.src.name}: {report.description} -> {report.model}")
    for note in report.notes:
        print(f"Note: {note}")
    if report.dropped:
        print(f"Dropped {len(report.dropped)} tensor(s) the zoo model has no place for: {', '.join(report.dropped)}")
    print(f"Wrote {out / WEIGHTS_FILENAME} and {out / CONFIG_FILENAME}; `{PROG} info {report.model} --weights "
          f"{shlex.quote(str(out))}` shows the inference settings recorded with them.")  # fmt: skip
    print(f"Use it: {PROG} predict --model {report.model} --weights {shlex.quote(str(out))}  # add image paths")
    print(f"    or: fpn_zoo.create_model({report.model!r}, weights={str(out)!r})")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    get_model_config(args.name)  # an unknown name fails before torch is imported
    from huggingface_hub import constants

    from fpn_zoo.weights import resolve
    from fpn_zoo.weights.cache import cache_dir

    entry = resolve.select_entry(args.name, args.tag or True)
    path = resolve.resolve_pretrained(args.name, entry.tag)
    print(f"{args.name} (tag {entry.tag}, {entry.status}): verified weights at {path}")
    fpn_cache = cache_dir()
    if entry.hub is not None:
        repo_folder = Path(constants.HF_HUB_CACHE) / f"models--{entry.hub.repo_id.replace('/', '--')}"
        copies = [
            ("HF_HUB_CACHE", constants.HF_HUB_CACHE, f"holds it in {repo_folder.name}/ (pinned commit)"),
            ("FPN_ZOO_CACHE", fpn_cache, "sha256 verification records (optional: else the file is hashed once)"),
        ]
    else:
        import torch

        copies = [
            ("FPN_ZOO_CACHE", fpn_cache, "holds the converted weights in converted/ and their verification records"),
            ("TORCH_HOME", Path(torch.hub.get_dir()).parent, "the upstream .pth in hub/checkpoints/ (optional: only "
             "needed to convert again)"),
        ]  # fmt: skip
    print("For offline use (a plane, an air-gapped machine, a Docker image), copy these folders:")
    for variable, folder, what in copies:
        print(f"  {variable}={folder}  {what}")
    print("and on the target set the same variables and HF_HUB_OFFLINE=1; there "
          f"`{PROG} predict --model {args.name} --pretrained {entry.tag}` and "
          f"`fpn_zoo.create_model({args.name!r}, pretrained={entry.tag!r})` load them without network.")  # fmt: skip
    return 0


def _expected_errors() -> tuple[type[BaseException], ...]:
    # Imported only once an error is being handled, so that `fpn-zoo --help` never pays for importing torch.
    # Deliberately not TypeError, KeyError or RuntimeError in general: those are bugs and keep their traceback.
    # The weights errors are listed although some are ValueError/OSError subclasses: this is the list to read.
    from fpn_zoo.factory import WeightsNotAvailableError
    from fpn_zoo.publish.publish import UploadError
    from fpn_zoo.weights.cache import CacheNotWritableError
    from fpn_zoo.weights.hub_download import WeightsDownloadError
    from fpn_zoo.weights.integrity import WeightsIntegrityError
    from fpn_zoo.weights.manifest import ManifestError

    return (
        ValueError,
        OSError,
        FloatingPointError,  # a diverging training run: the message says what to change
        WeightsNotAvailableError,
        WeightsDownloadError,
        WeightsIntegrityError,
        CacheNotWritableError,
        ManifestError,
        UploadError,
    )


def _flags_of(parser: argparse.ArgumentParser, command: str) -> set[str]:
    """The option strings of subcommand ``command``: what error messages may offer (``fpn_zoo.voice``)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # argparse keeps
    # its subcommands only there; reading them beats keeping a second list of every command's flags by hand.
    return {flag for action in subparsers.choices[command]._actions for flag in action.option_strings}


def _fail(message: object) -> int:
    text = " ".join(str(message).split())  # one line, whatever the exception's formatting
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run ``fpn-zoo`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit status.

    Args:
        argv: Command-line arguments without the program name.

    Returns:
        0 on success, 2 on a usage or expected error (reported as one ``fpn-zoo: error: ...`` line on stderr).

    Example:
        >>> main(["list", "fpn_r50*"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help and usage errors; returned so in-process callers keep control
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    try:
        with cli_voice(f"{PROG} {args.command}", _flags_of(parser, args.command)):
            return args.handler(args)
    except UnknownModelError as err:
        return _fail(err.args[0])  # str(KeyError) would wrap the message in quotes
    except BrokenPipeError:  # `fpn-zoo list | head`: the reader left, nothing to report
        with contextlib.suppress(OSError, ValueError):  # Python's recipe: stdout to devnull, no 2nd error at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        # The builtin kinds first: an input error is reported at once, not after importing torch for the check.
        plain_input_error = isinstance(err, (ValueError, OSError))
        if plain_input_error or isinstance(err, _expected_errors()):
            return _fail(err)
        raise


if __name__ == "__main__":
    sys.exit(main())
