"""``fpn-zoo export`` and ``fpn-zoo publish``: argument parsing and output (the work is in export.py/publish.py).

Imports nothing heavy at module level: ``fpn_zoo.cli`` registers these commands while building its parser, and
``fpn-zoo --help`` must stay instant.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

__all__ = ["add_export_command", "add_publish_command", "add_publish_converted_command"]


def add_export_command(sub: Any) -> None:
    """Register ``fpn-zoo export`` on the CLI's subparsers."""
    p = sub.add_parser("export", help="write a checkpoint as a Hub-ready folder with a model card")
    p.add_argument("--model", required=True, help="model name, e.g. fpn_r50_coco")
    p.add_argument("--checkpoint", type=Path, required=True, help="exported folder or .safetensors file")
    p.add_argument("--out", type=Path, required=True, help="folder receiving model.safetensors, config.json, README.md")
    p.add_argument("--tag", help="weights tag in weights_manifest.json, e.g. coco (its entry's metrics are used)")
    p.add_argument("--metrics", type=Path, help="JSON list of {dataset, metric, value, source} for the card")
    p.add_argument("--license", help="licence of the weights, an SPDX id such as apache-2.0")
    p.add_argument(
        "--dataset", action="append", default=[], dest="datasets", metavar="D",
        help="Hub dataset id the weights were trained on (repeatable)",
    )  # fmt: skip
    p.add_argument("--manifest", type=Path, help="manifest to read --tag from (default: the one in use)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out (default: refuse)")
    p.set_defaults(handler=_cmd_export)


def add_publish_command(sub: Any) -> None:
    """Register ``fpn-zoo publish`` on the CLI's subparsers."""
    p = sub.add_parser("publish", help="upload an export to the Hugging Face Hub and pin it in the manifest")
    p.add_argument("export_dir", type=Path, metavar="DIR", help="folder written by `fpn-zoo export`")
    p.add_argument("--repo-id", required=True, help="Hub model repository, ORG/NAME (created if missing)")
    p.add_argument("--revision", default="main", metavar="BRANCH", help="branch to commit to (default: main)")
    p.add_argument("--tag", help="weights tag of the manifest entry (default: the export's)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--manifest", type=Path, help="manifest to update (default: the one in use)")
    p.add_argument("--dry-run", action="store_true", help="validate and print what would happen; no network, no writes")
    p.set_defaults(handler=_cmd_publish)


def add_publish_converted_command(sub: Any) -> None:
    """Register ``fpn-zoo publish-converted`` (maintainers) on the CLI's subparsers."""
    p = sub.add_parser(
        "publish-converted",
        help="maintainers: convert every convertible manifest entry and publish each to the Hub, pinned",
        description="For every `convertible` entry of weights_manifest.json: download the upstream checkpoint, check "
        "its hash, convert it, export it with its model card and publish it to ORG/{model}.{tag}, replacing the "
        "entry by a `published` one pinned to the new commit. Stops at the first failure; rerun to continue.",
    )
    p.add_argument("--org", required=True, help="Hub organisation or user receiving the repositories")
    p.add_argument("--work-dir", type=Path, required=True, help="folder for the exports (kept: what was uploaded)")
    p.add_argument("--models", metavar="GLOB", help="only models matching this pattern, e.g. 'fpn_r50*'")
    p.add_argument("--manifest", type=Path, help="manifest to read and update (default: the one in use)")
    p.add_argument("--private", action="store_true", help="create new repositories private")
    p.add_argument(
        "--dry-run", action="store_true",
        help="convert and export, then print the plans; no upload, no manifest change (upstream files are downloaded)",
    )  # fmt: skip
    p.set_defaults(handler=_cmd_publish_converted)


def _cmd_export(args: argparse.Namespace) -> int:
    from fpn_zoo.publish.export import export_checkpoint
    from fpn_zoo.registry import get_model_config

    get_model_config(args.model)  # an unknown name fails before any file is read
    result = export_checkpoint(
        args.model,
        args.checkpoint,
        args.out,
        tag=args.tag,
        metrics_file=args.metrics,
        license=args.license,
        datasets=args.datasets,
        manifest=args.manifest,
        overwrite=args.overwrite,
    )
    print(f"Exported {args.model} to {result.out_dir}: model.safetensors ({result.size:,} bytes, sha256 "
          f"{result.sha256}), config.json, README.md.")  # fmt: skip
    gflops = "not counted" if result.gflops is None else f"{result.gflops:.2f} GFLOPs at 800x800"
    print(f"Parameters: {result.num_params:,}; {gflops}.")
    if result.metrics:
        print(f"Metrics in the card ({len(result.metrics)}, from {result.metrics_origin}):")
        for m in result.metrics:
            print(f"  {m.dataset} {m.metric} = {m.value:g} ({m.source})")
    else:
        print("No metrics: the card states that none were measured (give --metrics FILE, or --tag of a manifest "
              "entry that has some).")  # fmt: skip
    # publish needs a tag: the export's, else one for the reader to keep or change (the dataset, docs/manifest.md).
    tag = "" if args.tag else f" --tag {_dataset_tag(args.model, result.out_dir)}"
    print(f"Review {result.out_dir / 'README.md'}, then check the upload (nothing is sent): "
          f"fpn-zoo publish {shlex.quote(str(result.out_dir))} --repo-id ORG/NAME{tag} --dry-run")  # fmt: skip
    return 0


def _dataset_tag(model: str, export_dir: Path) -> str:
    """A weights tag for an export made without one: the model's dataset if it kept that label space, else custom."""
    from fpn_zoo.registry import get_model_config
    from fpn_zoo.weights.checkpoint import read_checkpoint

    registered = get_model_config(model)
    exported = read_checkpoint(export_dir).config
    same_labels = exported is not None and exported.categories == registered.categories
    return registered.dataset if same_labels else "custom"


def _cmd_publish(args: argparse.Namespace) -> int:
    from fpn_zoo.publish.publish import plan_publish, publish_export

    kwargs = {"revision": args.revision, "tag": args.tag, "manifest": args.manifest}
    if args.dry_run:
        plan = plan_publish(args.export_dir, args.repo_id, **kwargs)
        print("Dry run: nothing uploaded, nothing written.")
        print(f"Would upload to https://huggingface.co/{plan.repo_id} (branch {plan.branch}) in one commit:")
        width = max(len(f.name) for f in plan.files)
        for f in plan.files:
            print(f"  {f.name:<{width}}  {f.size:>13,} bytes  sha256 {f.sha256}")
        space = f"new label space {plan.label_space!r}" if plan.new_label_space else f"label space {plan.label_space!r}"
        print(f"Would write to {plan.manifest_path} (models.{plan.config.name}, tag {plan.tag}, {space}):")
        print(json.dumps(plan.entry, indent=2))
        return 0
    result = publish_export(args.export_dir, args.repo_id, private=args.private or None, **kwargs)
    plan = result.plan
    print(f"Published {plan.config.name} ({plan.tag}) to {plan.repo_id}@{plan.branch}: commit {result.commit}")
    print(f"  {result.commit_url}")
    print(f"Wrote the entry to {plan.manifest_path} (models.{plan.config.name}, tag {plan.tag}, pinned to that "
          f"commit). Load it: fpn_zoo.create_model({plan.config.name!r}, pretrained={plan.tag!r})")  # fmt: skip
    return 0


def _cmd_publish_converted(args: argparse.Namespace) -> int:
    from fpn_zoo.publish.converted import convertible_entries, publish_converted

    entries = convertible_entries(args.models, args.manifest)
    if not entries:
        print(f"No convertible entry{' for ' + args.models if args.models else ''}: nothing to publish.")
        return 0
    print(f"{len(entries)} convertible entr{'y' if len(entries) == 1 else 'ies'} to publish under {args.org}/"
          f"{'' if not args.dry_run else ' (dry run: no upload, no manifest change)'}")  # fmt: skip
    done = publish_converted(
        args.org,
        work_dir=args.work_dir,
        pattern=args.models,
        manifest=args.manifest,
        dry_run=args.dry_run,
        private=args.private or None,
        progress=print,
    )
    if args.dry_run:
        for item in done:
            files = ", ".join(f"{f.name} ({f.size:,} bytes, sha256 {f.sha256[:12]}...)" for f in item.plan.files)
            print(f"  {item.repo_id}: {files}")
        print(f"Publish for real: drop --dry-run. The exports are in {args.work_dir}.")
    else:
        print(f"Published {len(done)}; {done[0].plan.manifest_path} pins each to its commit.")
    return 0
