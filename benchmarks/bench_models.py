"""Latency, memory, parameters and FLOPs of the zoo, side by side with torchvision and effdet in one run.

Rows:
    1. ``fpn_r50_coco`` vs torchvision ``fasterrcnn_resnet50_fpn``: same weights, same image (target ratio <= 1.02).
    2. The FPN neck vs ``torchvision.ops.FeaturePyramidNetwork`` on the same C2-C5 tensors (target <= 1.02).
    3. The BiFPN neck vs effdet's ``BiFpn`` at the same width, repeats and levels (target <= 1.0).
    4. Every registered model plus torchvision's detector: params, GFLOPs, peak memory of one forward and latency,
       each measured in a fresh subprocess so that no allocator cache or earlier peak leaks into the next.

Paired rows run interleaved in one process (ours, reference, reference, ours, ...) and report
``ratio = median(ours) / median(reference)``. Every weight is random: nothing is downloaded. The score threshold is
0.0 for every detector, so each returns the full 100 detections per image (see benchmarks/README.md).

Usage:
    python benchmarks/bench_models.py                  # CPU, writes docs/results/bench-cpu-<date>.json
    python benchmarks/bench_models.py --quick --out /tmp/bench.json
    python benchmarks/bench_models.py --device cuda    # fp32 and bf16 rows
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (
    PRECISIONS,
    count_flops,
    library_versions,
    machine_info,
    max_rss_kib,
    measure_peak_rss,
    measure_peak_tensor_memory,
    precision,
    release_free_heap,
    summarize,
    time_interleaved,
)
from _pairs import SCORE_THRESH, image, pair_builders, proposals_of_next_forward, size_str
from _report import models_table, pairs_table

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
TV_REFERENCE = "torchvision:fasterrcnn_resnet50_fpn"
QUICK_MODELS = ("fpn_r50_coco", "bifpn_r50_coco")
WEIGHTS_NOTE = (
    "All weights are random (no pretrained weights exist here). Every detector runs with score threshold 0.0, so the "
    "RoI stage post-processes and returns the full 100 detections per image (and the RPN passes 1000 proposals, "
    "recorded per row); with trained weights and the default 0.05 threshold the final post-processing is cheaper."
)
_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench +{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 32:
        raise argparse.ArgumentTypeError(f"Size {text!r} must be HEIGHTxWIDTH with both sides >= 32, e.g. 800x1216.")
    return int(match[1]), int(match[2])


def _runner(fn: Callable[[], Any], device: torch.device, prec: str) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode(), precision(device, prec):
            return fn()

    return run


def run_pairs(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_models_") as tmp:
        for size in args.sizes:
            for kind, build in pair_builders(size, device, Path(tmp), args.seed):
                if kind not in args.pairs:
                    continue
                pair = build()
                sides = {"ours": pair.ours, "reference": pair.reference}
                with torch.inference_mode():
                    gflops = {side: count_flops(fn)[0] / 1e9 for side, fn in sides.items()}
                log(
                    f"{pair.comparison} @ {size_str(size)}: outputs match={pair.check['match']} "
                    f"(max abs diff {pair.check['max_abs_diff']:.1e})"
                )
                for prec in args.precisions:
                    fns = {side: _runner(fn, device, prec) for side, fn in sides.items()}
                    times = time_interleaved(fns, warmup=args.warmup, runs=args.runs, device=device)
                    stats = {side: summarize(t) for side, t in times.items()}
                    ratio = stats["ours"]["median_ms"] / stats["reference"]["median_ms"]
                    paired = [a / b for a, b in zip(times["ours"], times["reference"], strict=True)]
                    rows.append({
                        "comparison": pair.comparison, "size": size_str(size), "precision": prec,
                        "target": pair.target, "ratio": ratio, "paired_ratio_median": summarize(paired)["median_ms"],
                        "meets_target": ratio <= pair.target, "outputs_match": pair.check["match"],
                        "check": pair.check, "gflops": gflops, "config": pair.config,
                        **{side: {**stats[side], "times_ms": times[side]} for side in sides},
                    })  # fmt: skip
                    log(
                        f"  {prec}: ours {stats['ours']['median_ms']:.1f} ms, reference "
                        f"{stats['reference']['median_ms']:.1f} ms, ratio {ratio:.3f} (target <= {pair.target})"
                    )
                del pair, sides, fns
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    return rows


def _build_for_table(name: str, size: tuple[int, int], device: torch.device, seed: int) -> tuple[Any, str, str]:
    """The default build of ``name`` (seeded), or torchvision's detector carrying ``fpn_r50_coco``'s weights."""
    import fpn_zoo

    hw = dict(min_size=min(size), max_size=max(size), box_score_thresh=SCORE_THRESH)
    torch.manual_seed(seed)
    if name != TV_REFERENCE:
        config = fpn_zoo.get_model_config(name)
        model = fpn_zoo.create_model(name, device=device, **hw)
        return model, f"{config.backbone} ({config.backbone_spec.timm_name})", config.neck
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from fpn_zoo.weights.convert import torchvision_to_zoo_keys

    # Same weights as the fpn_r50_coco row (same seed): torchvision's own init yields far fewer RPN proposals,
    # which would make its RoI stage, memory and FLOPs smaller for reasons that have nothing to do with the code.
    zoo = fpn_zoo.create_model("fpn_r50_coco", device=device, **hw).state_dict()
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **hw).to(device).eval()
    state = model.state_dict()
    for key in state:
        if not key.endswith("num_batches_tracked"):
            state[key] = zoo[next(iter(torchvision_to_zoo_keys({key: state[key]})))]
    model.load_state_dict(state)
    del zoo
    return model, "r50 (torchvision resnet50)", "fpn (torchvision, fpn_r50_coco's weights)"


def model_child(args: argparse.Namespace) -> None:
    """Measure one model in this fresh process; write the result as JSON to ``--_child-out``."""
    device, name, size = torch.device(args.device), args._model_child, args._size
    start = time.perf_counter()
    phases_s: dict[str, float] = {}

    def phase(label: str) -> None:
        phases_s[label] = time.perf_counter() - start - sum(phases_s.values())

    model, backbone, neck = _build_for_table(name, size, device, args.seed)
    phase("build")
    images, outputs = image(size, device, args.seed + 1), []
    proposals = proposals_of_next_forward(model)

    def forward() -> None:
        outputs.append(model(images))

    with torch.no_grad():
        if device.type == "cpu":  # the first forward of the process: one-time allocations included, as a user sees
            rss = measure_peak_rss(forward)
            phase("peak_rss_forward")
            tensors = measure_peak_tensor_memory(forward, device)
        else:
            release_free_heap()
            tensors = measure_peak_tensor_memory(forward, device)
            rss = {"process_peak_rss_mib": max_rss_kib() / 1024}
        phase("peak_tensor_forward")
        total_flops, per_module = count_flops(lambda: model(images))
        phase("flops_forward")
    latency = {}
    for prec in args.precisions:
        fns = {"model": _runner(lambda: model(images), device, prec)}
        times = time_interleaved(fns, warmup=args.model_warmup, runs=args.model_runs, device=device)["model"]
        latency[prec] = {**summarize(times), "times_ms": times}
    phase("timing")
    dets = outputs[0]
    result = {
        "name": name, "backbone": backbone, "neck": neck, "size": size_str(size),
        "params": sum(p.numel() for p in model.parameters()), "gflops": total_flops / 1e9,
        "gflops_by_module": {k: v / 1e9 for k, v in per_module.items()}, "peak_rss": rss,
        "peak_tensor_memory": tensors, "latency": latency, "proposals_per_image": proposals,
        "detections_per_image": [len(d["boxes"]) for d in dets],
        "outputs_finite": all(bool(torch.isfinite(d["boxes"]).all() and torch.isfinite(d["scores"]).all())
                              for d in dets),
        "phases_s": phases_s, "torch_num_threads": torch.get_num_threads(), "child_wall_s": time.perf_counter() - start,
    }  # fmt: skip
    Path(args._child_out).write_text(json.dumps(result))


def run_models(args: argparse.Namespace, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_models_child_") as tmp:
        for i, name in enumerate([*names, TV_REFERENCE]):
            out = Path(tmp) / f"{i}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_model-child", name, "--_child-out", str(out),
                   "--_size", size_str(args.model_size), "--device", args.device, "--seed", str(args.seed),
                   "--precisions", ",".join(args.precisions), "--model-runs", str(args.model_runs),
                   "--model-warmup", str(args.model_warmup)]  # fmt: skip
            start = time.perf_counter()
            try:
                proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
                error = f"exit code {proc.returncode}: {proc.stderr.strip()[-400:]}" if proc.returncode else None
            except subprocess.TimeoutExpired:
                error = "timed out after 3600 s"
            if error or not out.is_file():
                rows.append({"name": name, "error": error or "the measuring subprocess wrote no result"})
                log(f"model {name}: FAILED ({rows[-1]['error']})")
                continue
            row = json.loads(out.read_text())
            rows.append(row)
            if row["proposals_per_image"] != [1000] or not row["outputs_finite"]:
                log(f"WARNING {name}: proposals {row['proposals_per_image']}, outputs finite={row['outputs_finite']}")
            log(
                f"model {name} ({i + 1}/{len(names) + 1}): {row['gflops']:.0f} GFLOPs, "
                f"+{row['peak_tensor_memory']['increase_mib']:.0f} MiB tensors, "
                f"{row['latency'][args.precisions[0]]['median_ms']:.0f} ms; {time.perf_counter() - start:.0f} s"
            )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--precisions", help="comma-separated fp32,bf16 (default: fp32 on CPU, fp32,bf16 on CUDA)")
    p.add_argument("--runs", type=int, help="timed runs per side-by-side row, >= 10 (default 10; quick: 3)")
    p.add_argument("--warmup", type=int, help="untimed runs before timing, >= 2 (default 2; quick: 1)")
    p.add_argument("--model-runs", type=int, help="timed runs per model in the models table (default 3; quick: 2)")
    p.add_argument("--model-warmup", type=int, help="untimed runs per model before its timed runs (default 1)")
    p.add_argument("--models", help="fnmatch pattern over fpn_zoo.list_models() (default: all; quick: 2 models)")
    p.add_argument("--sizes", help="HxW,HxW; the first one also sizes the models table (default 800x1216,512x512)")
    p.add_argument("--skip-models", action="store_true", help="only the side-by-side rows")
    p.add_argument("--skip-pairs", action="store_true", help="only the models table")
    p.add_argument("--pairs", default="detector,fpn,bifpn", help="side-by-side rows to run (default: all three)")
    p.add_argument("--quick", action="store_true", help="smoke check: 1 warm-up, 3 runs, 2 models, small sizes")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    p.add_argument("--out", help="results JSON (default: docs/results/bench-<device>-<date>[-quick].json)")
    p.add_argument("--_model-child", help=argparse.SUPPRESS)
    p.add_argument("--_child-out", help=argparse.SUPPRESS)
    p.add_argument("--_size", type=parse_size, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    def pick(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if args.quick else full)

    args.runs, args.warmup = pick(args.runs, 10, 3), pick(args.warmup, 2, 1)
    args.model_runs, args.model_warmup = pick(args.model_runs, 3, 2), pick(args.model_warmup, 1, 1)
    default_precisions = "fp32,bf16" if args.device.startswith("cuda") else "fp32"
    args.precisions = [s.strip() for s in (args.precisions or default_precisions).split(",") if s.strip()]
    if bad := [s for s in args.precisions if s not in PRECISIONS]:
        p.error(f"unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}")
    try:
        args.sizes = [parse_size(s) for s in pick(args.sizes, "800x1216,512x512", "320x480,256x256").split(",")]
    except argparse.ArgumentTypeError as err:
        p.error(str(err))
    args.model_size = args.sizes[0]
    args.pairs = [s.strip() for s in args.pairs.split(",") if s.strip()]
    if bad := [s for s in args.pairs if s not in ("detector", "fpn", "bifpn")]:
        p.error(f"unknown --pairs {bad}; choose from detector, fpn, bifpn")
    if args._model_child:
        return args
    if not args.quick and (args.runs < 10 or args.warmup < 2):
        p.error("a reportable run needs --runs >= 10 and --warmup >= 2; use --quick for a smoke check")
    if min(args.runs, args.model_runs) < 1 or min(args.warmup, args.model_warmup) < 0:
        p.error("--runs and --model-runs must be >= 1, warm-ups >= 0")
    if args.skip_models and args.skip_pairs:
        p.error("--skip-models and --skip-pairs together leave nothing to run")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device} requested but CUDA is not available here")
    return args


def select_models(args: argparse.Namespace) -> list[str]:
    import fpn_zoo

    names = fpn_zoo.list_models(args.models or "*")
    if not names:
        sys.exit(f"--models {args.models!r} matches none of: {', '.join(fpn_zoo.list_models())}")
    if args.quick:
        return names[:2] if args.models else list(QUICK_MODELS)
    return names


def main(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # effdet calls the deprecated torch.jit.script
    args = parse_args(argv)
    if args._model_child:
        return model_child(args)
    device, now = torch.device(args.device), datetime.datetime.now(datetime.timezone.utc)
    default_out = REPO / "docs" / "results" / f"bench-{device.type}-{now:%Y%m%d}{'-quick' * args.quick}.json"
    out = Path(args.out or default_out)
    names = [] if args.skip_models else select_models(args)
    log(
        f"device {device}, torch threads {torch.get_num_threads()}, sizes {[size_str(s) for s in args.sizes]}, "
        f"runs {args.runs}, models {len(names)}{' (quick)' * args.quick}"
    )
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "date": now.isoformat(timespec="seconds"), "quick": args.quick,
        "command": [Path(sys.executable).name, *sys.argv], "device": str(device), "machine": machine_info(device),
        "versions": library_versions(REPO),
        "settings": {
            "runs": args.runs, "warmup": args.warmup, "model_runs": args.model_runs,
            "model_warmup": args.model_warmup, "sizes": [size_str(s) for s in args.sizes],
            "model_size": size_str(args.model_size), "precisions": args.precisions, "pairs": args.pairs,
            "batch": 1, "seed": args.seed, "score_thresh": SCORE_THRESH, "weights": WEIGHTS_NOTE,
            "grad_mode": "torch.inference_mode for timing, torch.no_grad for memory and FLOPs",
            "timer": "time.perf_counter_ns; torch.cuda.synchronize before and after each call on CUDA",
            "interleaving": "rounds alternate the order: ours, reference | reference, ours | ...",
            "models_table": "one fresh subprocess per model: build, one forward for peak RSS, one for peak tensor "
            "memory, one FLOP-counting forward, model_warmup untimed then model_runs timed forwards",
        },
        "pairs": run_pairs(args, device) if not args.skip_pairs else [],
        "models": run_models(args, names) if names else [],
    }  # fmt: skip
    results["total_wall_s"] = time.perf_counter() - _START
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")

    machine = results["machine"]
    print(f"# fpn_zoo benchmark, {results['date']}{' (QUICK smoke check, not reportable)' * args.quick}\n")
    print(
        f"{machine['processor']}, {machine['cpu_count']} CPUs, torch {results['versions']['torch']} with "
        f"{machine['torch_num_threads']} threads, device {device}. {WEIGHTS_NOTE}\n"
    )
    if results["pairs"]:
        print(pairs_table(results["pairs"], args) + "\n")
    if results["models"]:
        print(models_table(results["models"], args) + "\n")
    print(f"Total {results['total_wall_s'] / 60:.1f} min. Raw timings: {out}")


if __name__ == "__main__":
    main()
