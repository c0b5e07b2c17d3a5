"""``fpn-zoo bench load``: load time and peak memory of ``create_model("fpn_r50_coco", pretrained=True)`` next to
torchvision's, in one run.

Compares, on a warm cache and in a fresh process per measurement (``python -m fpn_zoo.bench.load_child``):
    ours         ``fpn_zoo.create_model("fpn_r50_coco", pretrained=True, device=...)``: construction on the meta
                 device + a load of the converted safetensors, verified by a stat against the record of the file's
                 sha256 (targets: wall-time ratio <= 0.6, peak RSS ratio <= 1.1);
    torchvision  ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` +
                 ``load_state_dict(torch.load(PTH))`` of the same checkpoint file.

No COCO weights can be downloaded here, so the checkpoint is torchvision's own random initialisation (seeded), saved
as a ``.pth`` named like torchvision's and served over loopback HTTP to a temporary manifest whose ``fpn_r50_coco``
entry points at it. The cold path (download, sha256, conversion, load) therefore runs exactly as it does for the real
COCO_V1 file, which has the same tensors and the same size. Summaries and the report are in ``load_report``.

Example:
    .. code-block:: console

        $ fpn-zoo bench load                  # CPU, writes docs/results/load-cpu-<date>.json and .md
        $ fpn-zoo bench load --quick --out /tmp/load.json
        $ fpn-zoo bench load --device cuda    # + time to first detection (untested: no GPU where written)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import functools
import http.server
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from fpn_zoo.bench.load_child import MODEL
from fpn_zoo.bench.machine import REPO_ROOT
from fpn_zoo.bench.stage_log import ChildError, StageLog

__all__ = ["SCHEMA_VERSION", "main", "parse_args", "run"]

SCHEMA_VERSION = 1  # of the results JSON; docs/results/load-cpu-20261121.json has it too
TAG = "coco_tv"
PROG = "fpn-zoo bench load"
DESCRIPTION = (
    'Load time and peak memory of create_model("fpn_r50_coco", pretrained=True) next to torchvision\'s '
    "fasterrcnn_resnet50_fpn + load_state_dict(torch.load(PTH)) of the same checkpoint, warm and cold, one fresh "
    "process per measurement, interleaved. Writes JSON and a markdown table; prints PASS/MISS per target and exits 0."
)
log = StageLog("bench load")


def run_child(mode: str, env: dict[str, str], args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it wrote."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, "-m", "fpn_zoo.bench.load_child", mode, "--out", str(out), "--device", args.device,
           "--threads", str(args.threads), "--seed", str(args.seed), *extra]  # fmt: skip
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode or not out.stat().st_size:
            raise ChildError(f"{mode} child failed (exit {proc.returncode}):\n{proc.stderr.strip()[-3000:]}")
        return json.loads(out.read_text())
    finally:
        out.unlink(missing_ok=True)


def child_env(caches: Path, manifest: Path, verify: str = "") -> dict[str, str]:
    """The environment of one measurement: its own caches, the temporary manifest, no proxy for loopback."""
    env = {k: v for k, v in os.environ.items() if k not in ("FPN_ZOO_VERIFY", "HF_HUB_OFFLINE", "PYTHONPATH")}
    no_proxy = ",".join(filter(None, [os.environ.get("no_proxy", ""), "127.0.0.1,localhost"]))
    env.update(
        FPN_ZOO_MANIFEST=str(manifest),
        FPN_ZOO_CACHE=str(caches / "fpn_zoo"),
        TORCH_HOME=str(caches / "torch"),
        HF_HOME=str(caches / "hf"),
        HF_HUB_CACHE=str(caches / "hf" / "hub"),
        PYTHONPATH=str(REPO_ROOT),  # the children import the fpn_zoo this process runs
        no_proxy=no_proxy,
        NO_PROXY=no_proxy,
    )
    if verify:
        env["FPN_ZOO_VERIFY"] = verify
    return env


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    """A loopback HTTP server for ``directory`` in a daemon thread (the "upstream" of the cold path)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def write_manifest(dest: Path, url: str, sha256_prefix: str) -> dict[str, Any]:
    """A copy of the repository manifest whose ``fpn_r50_coco`` has only the ``coco_tv`` entry (so ``pretrained=True``
    loads it), its upstream pointing at ``url``; returns that entry."""
    from fpn_zoo.weights.manifest import MANIFEST_PATH

    data = json.loads(MANIFEST_PATH.read_text())
    entry = next(e for e in data["models"][MODEL]["weights"] if e["tag"] == TAG)
    data["models"][MODEL]["weights"] = [entry]
    original = copy.deepcopy(entry["upstream"])
    # sha256 stays null, as in the real manifest: the upstream publishes only the 8-hex prefix in the file name.
    entry["upstream"].update(url=url, sha256_prefix=sha256_prefix, sha256=None)
    dest.write_text(json.dumps(data, indent=1))
    return {"replaced": original, "with": entry["upstream"]}


def measure_warm(args: argparse.Namespace, env: dict[str, str], env_always: dict[str, str], pth: Path) -> dict:
    """Interleaved rounds of fresh processes: ours, torchvision, verify=always | always, torchvision, ours | ..."""
    sides = {
        "ours": lambda: run_child("ours", env, args, *args.child_flags),
        "torchvision": lambda: run_child("torchvision", env, args, "--pth", str(pth), *args.child_flags),
        "verify_always": lambda: run_child("ours", env_always, args, "--verify-env", "always", *args.child_flags),
    }
    names = list(sides)
    for r in range(args.warmup):
        for name in names:
            sides[name]()
        log(f"warm-up round {r + 1}/{args.warmup} done (not recorded)")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for r in range(args.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            runs[name].append(sides[name]())
        log(
            f"round {r + 1}/{args.repeats}: ours {runs['ours'][-1]['wall_ms']:.0f} ms, torchvision "
            f"{runs['torchvision'][-1]['wall_ms']:.0f} ms, verify=always {runs['verify_always'][-1]['wall_ms']:.0f} ms"
        )
    return runs


def _measure(args: argparse.Namespace, results: dict[str, Any], work: Path) -> None:
    """Every measurement, in ``work`` (temporary caches and the served checkpoint), added to ``results``."""
    from fpn_zoo.bench.load_report import ratios, side_summary
    from fpn_zoo.bench.measure import summarize_values as stats

    upstream = work / "upstream"
    upstream.mkdir()
    manifest = work / "weights_manifest.json"
    base_env = child_env(work / "scratch", manifest)
    log("building and saving torchvision's random fasterrcnn_resnet50_fpn (the checkpoint of both sides)")
    ckpt = run_child("setup", base_env, args, "--workdir", str(upstream))
    results["checkpoint"] = ckpt
    server = serve(upstream)  # until the end: no load should need it once cached, but none may miss it
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{ckpt['filename']}"
        results["manifest"] = write_manifest(manifest, url, ckpt["sha256"][:8])
        log(f"{ckpt['filename']}: {ckpt['size_bytes'] / 1e6:.1f} MB, served at {url}")

        # Cold: fresh caches each time. The first run's caches become the warm cache.
        cold_runs = []
        for i in range(args.cold_runs):
            env = child_env(work / f"cache-{i}", manifest)
            cold_runs.append(run_child("ours", env, args, "--phases", *args.child_flags))
            log(f"cold load {i + 1}/{args.cold_runs}: {cold_runs[-1]['wall_ms']:.0f} ms")
            if i:
                shutil.rmtree(work / f"cache-{i}")
        warm_caches = work / "cache-0"
        env, env_always = child_env(warm_caches, manifest), child_env(warm_caches, manifest, "always")
        pth = warm_caches / "torch" / "hub" / "checkpoints" / ckpt["filename"]
        converted = next((warm_caches / "fpn_zoo" / "converted" / MODEL).glob(f"{TAG}-*/model.safetensors"))
        cold = side_summary(cold_runs)
        sha_calls = [c for label, c in cold["phase_calls"].items() if "sha256_file" in label]
        results["cold"] = {**cold, "sha256_calls": sha_calls[0] if sha_calls else 0, "runs": cold_runs}

        log("checking that both sides compute the same function")
        results["check"] = run_child("check", env, args, "--pth", str(pth))
        log(f"  match: {results['check']['match']}")

        log("sha256 cost")
        sha = run_child("sha256", env, args, "--pth", str(pth), "--safetensors", str(converted),
                        "--runs", str(args.sha_runs))  # fmt: skip
        results["sha256"] = {
            **{k: {"size_bytes": sha[k]["size_bytes"], "sha256": sha[k]["sha256"], "ms": stats(sha[k]["times_ms"]),
                   "mb_per_s": sha[k]["size_bytes"] / 1e6 / (statistics.median(sha[k]["times_ms"]) / 1e3),
                   "times_ms": sha[k]["times_ms"]} for k in ("safetensors", "pth")},
            "record_check_ms": stats(sha["record_check"]["times_ms"]),
            "record_check_recorded": sha["record_check"]["recorded"],
        }  # fmt: skip

        log(f"warm: {args.warmup} warm-up + {args.repeats} interleaved rounds of fresh processes")
        runs = measure_warm(args, env, env_always, pth)
        r = ratios(runs["ours"], runs["torchvision"])
        r["verify_always_vs_torchvision"] = ratios(runs["verify_always"], runs["torchvision"])["wall"]
        r["verify_always_vs_ours"] = ratios(runs["verify_always"], runs["ours"])["wall"]
        results["warm"] = {
            **{name: {**side_summary(side_runs), "runs": side_runs} for name, side_runs in runs.items()},
            "ratios": r,
        }
        log(f"phase runs: {args.phase_runs}")
        phase_runs = [run_child("ours", env, args, "--phases", *args.child_flags) for _ in range(args.phase_runs)]
        phase_summary = side_summary(phase_runs)
        results["phase_runs"] = {
            "warm_runs": args.phase_runs,
            "warm": phase_summary["phases_ms"],
            "warm_calls": phase_summary["phase_calls"],
            "order": list(dict.fromkeys([*phase_runs[0]["phase_order"], *phase_summary["phases_ms"]])),
            "warm_total_ms": stats([p["wall_ms"] for p in phase_runs]),
            "runs": phase_runs,
        }
    finally:
        server.shutdown()


def parse_args(
    argv: list[str] | None = None,
    prog: str = PROG,
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> argparse.Namespace:
    """The options of ``fpn-zoo bench load``, with the run-dependent defaults filled in and checked.

    Examples:
        >>> args = parse_args(["--quick"])
        >>> (args.repeats, args.cold_runs, args.warmup)
        (2, 1, 0)
    """
    p = parser_class(prog=prog, description=DESCRIPTION)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on both sides (default 2)")
    p.add_argument("--repeats", type=int, help="warm measurements per side, >= 7 (default 9; quick: 2)")
    p.add_argument("--warmup", type=int, help="unrecorded warm rounds first (default 1; quick: 0)")
    p.add_argument("--cold-runs", type=int, help="cold loads, each with fresh caches (default 3; quick: 1)")
    p.add_argument("--sha-runs", type=int, help="sha256 timings per file (default 5; quick: 1)")
    p.add_argument("--phase-runs", type=int, help="warm loads with phase timers (default 3; quick: 1)")
    p.add_argument("--first-detection", action="store_true", help="also time one forward after each load "
                   "(default: off; on with --device cuda)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the random checkpoint (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke check: 2 repeats, 1 cold load, no warm-up")
    p.add_argument("--out", help="results JSON, with the .md beside it (default: docs/results/load-<device>-<date>)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary caches (for debugging)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)

    def pick(value: Any, full: int, quick: int) -> int:
        return value if value is not None else (quick if args.quick else full)

    args.repeats, args.warmup = pick(args.repeats, 9, 2), pick(args.warmup, 1, 0)
    args.cold_runs, args.sha_runs = pick(args.cold_runs, 3, 1), pick(args.sha_runs, 5, 1)
    args.phase_runs = pick(args.phase_runs, 3, 1)
    if not args.quick and args.repeats < 7:
        p.error("a reportable run needs --repeats >= 7; use --quick for a smoke check")
    if min(args.repeats, args.cold_runs, args.sha_runs, args.phase_runs, args.threads) < 1 or args.warmup < 0:
        p.error("--repeats, --cold-runs, --sha-runs, --phase-runs and --threads must be >= 1, --warmup >= 0")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            p.error(f"--device {args.device} requested but CUDA is not available here")
        args.first_detection = True
    elif args.device != "cpu":
        p.error("--device must be cpu or cuda[:N]")
    args.child_flags = ["--first-detection"] if args.first_detection else []
    return args


def run(args: argparse.Namespace) -> int:
    """Measure, write the JSON and the ``.md`` beside it, print the report and a PASS/MISS line per target; 0."""
    import torch

    from fpn_zoo.bench.load_report import OURS_CALL, TARGETS, TV_CALL, WEIGHTS_NOTE, report, verdict
    from fpn_zoo.bench.machine import library_versions, machine_info

    device, now = torch.device(args.device), datetime.datetime.now(datetime.timezone.utc)
    default_out = REPO_ROOT / "docs" / "results" / f"load-{device.type}-{now:%Y%m%d}{'-quick' * args.quick}.json"
    out = Path(args.out or default_out)
    log(f"device {device}, threads {args.threads}, repeats {args.repeats}, cold runs {args.cold_runs}"
        f"{' (quick)' * args.quick}")  # fmt: skip
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "date": now.isoformat(timespec="seconds"), "quick": args.quick,
        "command": [*PROG.split(), *args.argv], "device": str(device), "machine": machine_info(device),
        "versions": library_versions(REPO_ROOT),
        "settings": {
            "threads": args.threads, "repeats": args.repeats, "warmup_rounds": args.warmup,
            "cold_runs": args.cold_runs, "sha_runs": args.sha_runs, "phase_runs": args.phase_runs,
            "seed": args.seed, "first_detection": args.first_detection, "weights": WEIGHTS_NOTE,
            "ours": OURS_CALL, "torchvision": TV_CALL,
            "timer": "time.perf_counter_ns around the load only; imports done and timed before it",
            "process": "one fresh interpreter per measurement (python -m fpn_zoo.bench.load_child)",
            "interleaving": "rounds alternate the order: ours, torchvision, verify=always | verify=always, "
            "torchvision, ours | ...",
            "rss": "VmHWM of the measuring process (process peak); increase = VmHWM reset after the imports "
            "(/proc/self/clear_refs) minus VmRSS after malloc_trim; ru_maxrss recorded too",
        },
    }  # fmt: skip
    try:
        import safetensors

        results["versions"]["safetensors"] = safetensors.__version__
    except ImportError:
        results["versions"]["safetensors"] = None
    results["machine"]["torch_num_threads_measured"] = args.threads

    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    try:
        _measure(args, results, work)
    finally:
        if args.keep_workdir:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    r = results["warm"]["ratios"]
    results["targets"] = TARGETS
    results["verdict"] = verdict(r)
    results["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["total_wall_s"] = log.elapsed_s
    text = report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    for key, result in results["verdict"].items():
        target = TARGETS[key.removeprefix("resident_")]
        print(f"{result} {key}: {r[key.removesuffix('_ratio')]:.3f} (target <= {target})")
    print(f"Total {results['total_wall_s'] / 60:.1f} min. Raw data: {out} (table: {out.with_suffix('.md')})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``fpn-zoo bench load`` outside the ``fpn-zoo`` parser (``benchmarks/bench_load.py`` calls this)."""
    return run(parse_args(argv))
