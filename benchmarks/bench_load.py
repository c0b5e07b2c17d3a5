"""Load time and peak memory of ``create_model("fpn_r50_coco", pretrained=True)`` next to torchvision's, in one run.

Compares, on a warm cache and in a fresh process per measurement:
    ours         ``fpn_zoo.create_model("fpn_r50_coco", pretrained=True, device=...)``: construction on the meta
                 device + a load of the converted safetensors, verified by a stat against the record of the file's
                 sha256 (targets: wall-time ratio <= 0.6, peak RSS ratio <= 1.1);
    torchvision  ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` +
                 ``load_state_dict(torch.load(PTH))`` of the same checkpoint file.

No COCO weights can be downloaded here, so the checkpoint is torchvision's own random initialisation (seeded), saved
as a ``.pth`` named like torchvision's and served over loopback HTTP to a temporary manifest whose ``fpn_r50_coco``
entry points at it. The cold path (download, sha256, conversion, load) therefore runs exactly as it does for the real
COCO_V1 file, which has the same tensors and the same size. Also measured: the sha256 a warm load skips, the warm load
with ``FPN_ZOO_VERIFY=always`` and torchvision's construction / ``torch.load`` / ``load_state_dict`` split.

Usage:
    python benchmarks/bench_load.py                 # CPU, writes docs/results/load-cpu-<date>.json and .md
    python benchmarks/bench_load.py --quick --out /tmp/load.json
    python benchmarks/bench_load.py --device cuda   # + time to first detection (untested: no GPU where written)
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
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import library_versions, machine_info, markdown_table, summarize

SCHEMA_VERSION = 1
REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "_load_child.py"
MODEL, TAG = "fpn_r50_coco", "coco_tv"
TARGETS = {"wall_ratio": 0.6, "peak_rss_ratio": 1.1}
WEIGHTS_NOTE = (
    "The checkpoint is torchvision's fasterrcnn_resnet50_fpn random initialisation (seeded), not COCO weights: none "
    "can be downloaded here. It has the same tensor names, shapes, dtypes and file size as the COCO_V1 .pth, and the "
    "conversion renames without changing values, so load times and memory do not depend on the values."
)
TIMM_IMPORT = "timm (deferred import of create_model)"  # the label _load_child.py gives it
OURS_CALL = f'fpn_zoo.create_model("{MODEL}", pretrained=True, device=DEVICE)'
TV_CALL = "fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) + load_state_dict(torch.load(PTH))"
_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[bench_load +{time.perf_counter() - _START:6.1f}s] {message}", file=sys.stderr, flush=True)


def stats(values: list[float]) -> dict[str, float | int]:
    """``summarize`` without the unit in the keys (the caller names the unit)."""
    return {k.removesuffix("_ms"): v for k, v in summarize(values).items()}


class ChildError(RuntimeError):
    pass


def run_child(mode: str, env: dict[str, str], args: argparse.Namespace, *extra: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return what it wrote."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [sys.executable, str(CHILD), mode, "--out", str(out), "--device", args.device,
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
        PYTHONPATH=str(REPO),
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


def side_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    phases: dict[str, list[float]] = {}
    order = list(dict.fromkeys([label for run in runs for label in [*run.get("phase_order", []), *run["phases"]]]))
    for run in runs:
        for label, p in run["phases"].items():
            phases.setdefault(label, []).append(p["ms"])
    return {
        "wall_ms": stats([r["wall_ms"] for r in runs]),
        "process_peak_rss_mib": stats([r["rss"]["process_peak_rss_mib"] for r in runs]),
        "peak_rss_increase_mib": stats([r["rss"]["increase_mib"] for r in runs]),
        "baseline_rss_mib": stats([r["rss"]["baseline_mib"] for r in runs]),
        "ru_maxrss_after_load_mib": stats([r["ru_maxrss_after_load_mib"] for r in runs]),
        "ru_maxrss_mib": stats([r["ru_maxrss_mib"] for r in runs]),
        "import_ms": stats([r["import_total_ms"] for r in runs]),
        "import_plus_load_ms": stats([r["import_total_ms"] + r["wall_ms"] for r in runs]),
        "load_plus_touch_ms": stats([r["load_plus_touch_ms"] for r in runs]),
        "touch_ms": stats([r["touch_ms"] for r in runs]),
        "resident_process_peak_rss_mib": stats([r["resident"]["process_peak_rss_mib"] for r in runs]),
        "resident_increase_mib": stats([r["resident"]["increase_mib"] for r in runs]),
        "rss_file_after_load_mib": stats([r["rss_after_load_mib"]["RssFile"] for r in runs]),
        "rss_file_after_touch_mib": stats([r["resident"]["rss_after_touch_mib"]["RssFile"] for r in runs]),
        "imports_ms_by_step": {k: stats([r["imports_ms"][k] for r in runs]) for k in runs[0]["imports_ms"]},
        "phase_calls": {label: max(r["phases"][label]["calls"] for r in runs if label in r["phases"])
                        for label in phases},
        "phases_ms": {label: stats(phases[label]) for label in order if label in phases},
        "modules_imported_during_load": sorted({m for r in runs for m in r["modules_imported_during_load"]}),
        **({"first_detection_ms": stats([r["first_detection_ms"] for r in runs])} if "first_detection_ms" in runs[0]
           else {}),
    }  # fmt: skip


def ratios(ours: list[dict[str, Any]], ref: list[dict[str, Any]]) -> dict[str, float]:
    def med(runs: list[dict[str, Any]], get: Any) -> float:
        return statistics.median(get(r) for r in runs)

    def wall(r: dict[str, Any]) -> float:
        return r["wall_ms"]

    def peak(r: dict[str, Any]) -> float:
        return r["rss"]["process_peak_rss_mib"]

    def inc(r: dict[str, Any]) -> float:
        return r["rss"]["increase_mib"]

    def touched(r: dict[str, Any]) -> float:
        return r["load_plus_touch_ms"]

    def resident(r: dict[str, Any]) -> float:
        return r["resident"]["process_peak_rss_mib"]

    return {
        "wall": med(ours, wall) / med(ref, wall),
        "wall_paired_median": statistics.median(wall(a) / wall(b) for a, b in zip(ours, ref, strict=True)),
        "peak_rss": med(ours, peak) / med(ref, peak),
        "peak_rss_paired_median": statistics.median(peak(a) / peak(b) for a, b in zip(ours, ref, strict=True)),
        "peak_rss_increase": med(ours, inc) / med(ref, inc),
        "import_plus_load": med(ours, lambda r: r["import_total_ms"] + wall(r))
        / med(ref, lambda r: r["import_total_ms"] + wall(r)),
        "resident_wall": med(ours, touched) / med(ref, touched),
        "resident_wall_paired_median": statistics.median(
            touched(a) / touched(b) for a, b in zip(ours, ref, strict=True)
        ),
        "resident_peak_rss": med(ours, resident) / med(ref, resident),
        "resident_increase": med(ours, lambda r: r["resident"]["increase_mib"])
        / med(ref, lambda r: r["resident"]["increase_mib"]),
    }


# ---------------------------------------------------------------------------------------------------------- report


def _msr(s: dict[str, Any], fmt: str = ".0f") -> str:
    return f"{s['median']:{fmt}} / {s['min']:{fmt}} / {s['iqr']:{fmt}}"


def _cell(phases: dict[str, Any], label: str) -> str:
    return f"{phases[label]['median']:.1f}" if label in phases else "-"


def report(results: dict[str, Any]) -> str:
    w, r = results["warm"], results["warm"]["ratios"]
    ours, tv, always = w["ours"], w["torchvision"], w["verify_always"]
    verdict = results["verdict"]
    n, dev = results["settings"]["repeats"], results["device"]
    machine, versions = results["machine"], results["versions"]
    cold, sha = results["cold"], results["sha256"]
    warm_phases, warm_calls = results["phase_runs"]["warm"], results["phase_runs"]["warm_calls"]
    st, pth = sha["safetensors"], sha["pth"]
    costs_table = markdown_table(
        ["measurement", "ms, median / min / IQR", "n", "notes"],
        [
            ["cold load: fresh caches, download (loopback HTTP) + sha256 + convert + load",
             _msr(cold["wall_ms"]), str(cold["wall_ms"]["n"]),
             f"peak RSS {cold['process_peak_rss_mib']['median']:.0f} MiB; sha256_file calls per cold load: "
             f"{cold['sha256_calls']} (phases below)"],
            [f"sha256 of the converted model.safetensors ({st['size_bytes'] / 1e6:.0f} MB): what a warm load "
             "skips", _msr(st["ms"]), str(st["ms"]["n"]), f"{st['mb_per_s']:.0f} MB/s, file in the page cache"],
            [f"sha256 of the upstream .pth ({pth['size_bytes'] / 1e6:.0f} MB)", _msr(pth["ms"]),
             str(pth["ms"]["n"]), f"{pth['mb_per_s']:.0f} MB/s"],
            ["the check that replaces it on the warm path: stat + verification record (`is_recorded`)",
             _msr(sha["record_check_ms"], ".3f"), str(sha["record_check_ms"]["n"]),
             f"record in `$FPN_ZOO_CACHE/verified/`, recorded={sha['record_check_recorded']}"],
            ["warm load with `FPN_ZOO_VERIFY=always` (hash on every load)", _msr(always["wall_ms"]),
             str(always["wall_ms"]["n"]),
             f"ratio to torchvision {r['verify_always_vs_torchvision']:.3f}; to the default warm load "
             f"{r['verify_always_vs_ours']:.3f}; peak RSS {always['process_peak_rss_mib']['median']:.0f} MiB"],
            *[[f"torchvision: {label}", _msr(s), str(s["n"]), ""] for label, s in tv["phases_ms"].items()],
        ],
        "lrrl",
    )  # fmt: skip
    phases_table = markdown_table(
        ["phase (indented = inside the unindented one above)", "warm ms", "warm calls", "cold ms", "cold calls"],
        [
            ["↳" * ((len(label) - len(label.lstrip())) // 2) + " " * (label != label.lstrip()) + label.strip(),
             _cell(warm_phases, label), str(warm_calls.get(label, "-")),
             _cell(cold["phases_ms"], label), str(cold["phase_calls"].get(label, "-"))]
            for label in results["phase_runs"]["order"]
        ] + [["total (create_model)", f"{results['phase_runs']['warm_total_ms']['median']:.1f}", "",
              f"{cold['wall_ms']['median']:.1f}", ""]],
        "lrrrr",
    )  # fmt: skip
    warm_table = markdown_table(
        ["", f"ours: `{OURS_CALL}`", f"torchvision: `{TV_CALL}`", "ratio (paired)", "target", "result"],
        [
            ["wall ms, median / min / IQR", _msr(ours["wall_ms"]), _msr(tv["wall_ms"]),
             f"{r['wall']:.3f} ({r['wall_paired_median']:.3f})", f"<= {TARGETS['wall_ratio']}",
             verdict["wall_ratio"]],
            ["process peak RSS MiB, median / min / IQR", _msr(ours["process_peak_rss_mib"]),
             _msr(tv["process_peak_rss_mib"]), f"{r['peak_rss']:.3f} ({r['peak_rss_paired_median']:.3f})",
             f"<= {TARGETS['peak_rss_ratio']}", verdict["peak_rss_ratio"]],
            ["peak RSS increase over the post-import baseline MiB", _msr(ours["peak_rss_increase_mib"]),
             _msr(tv["peak_rss_increase_mib"]), f"{r['peak_rss_increase']:.3f}", "", ""],
            ["post-import baseline RSS MiB (median)", f"{ours['baseline_rss_mib']['median']:.0f}",
             f"{tv['baseline_rss_mib']['median']:.0f}", "", "", ""],
            ["imports before the timed region, ms (not timed)", _msr(ours["import_ms"]), _msr(tv["import_ms"]),
             "", "", ""],
            ["imports + load, ms", _msr(ours["import_plus_load_ms"]), _msr(tv["import_plus_load_ms"]),
             f"{r['import_plus_load']:.3f}", "", ""],
            ["weights resident: load + read every tensor byte, ms", _msr(ours["load_plus_touch_ms"]),
             _msr(tv["load_plus_touch_ms"]), f"{r['resident_wall']:.3f} ({r['resident_wall_paired_median']:.3f})",
             f"<= {TARGETS['wall_ratio']}", verdict["resident_wall_ratio"]],
            ["weights resident: process peak RSS MiB", _msr(ours["resident_process_peak_rss_mib"]),
             _msr(tv["resident_process_peak_rss_mib"]), f"{r['resident_peak_rss']:.3f}",
             f"<= {TARGETS['peak_rss_ratio']}", verdict["resident_peak_rss_ratio"]],
            ["weights resident: peak RSS increase over the baseline MiB", _msr(ours["resident_increase_mib"]),
             _msr(tv["resident_increase_mib"]), f"{r['resident_increase']:.3f}", "", ""],
            ["file-backed RSS (RssFile) after the load / after reading the weights, MiB (median)",
             f"{ours['rss_file_after_load_mib']['median']:.0f} / {ours['rss_file_after_touch_mib']['median']:.0f}",
             f"{tv['rss_file_after_load_mib']['median']:.0f} / {tv['rss_file_after_touch_mib']['median']:.0f}",
             "", "", ""],
            *([["time to first detection ms (480x640)", _msr(ours["first_detection_ms"]),
                _msr(tv["first_detection_ms"]), "", "", ""]] if "first_detection_ms" in ours else []),
        ],
        "lrrrrl",
    )  # fmt: skip
    lines = [
        f"# fpn_zoo load benchmark, {results['date']}{' (QUICK smoke check, not reportable)' * results['quick']}",
        "",
        f"Command: `{' '.join(results['command'])}`",
        "",
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs (affinity {machine['cpu_affinity']}), "
        f"load average at start {', '.join(f'{x:.2f}' for x in machine['load_average_at_start'] or [])}, at the "
        f"end {', '.join(f'{x:.2f}' for x in machine.get('load_average_at_end') or [])}; "
        f"{machine['platform']}. Device {dev}, torch threads {results['settings']['threads']} on both sides.",
        "",
        f"Versions: python {versions['python']}, torch {versions['torch']}, torchvision {versions['torchvision']}, "
        f"timm {versions['timm']}, safetensors {versions.get('safetensors')}, fpn-zoo {versions['fpn-zoo']}, "
        f"commit `{versions['fpn_zoo_commit']}`.",
        "",
        f"Weights: {WEIGHTS_NOTE} File: `{results['checkpoint']['filename']}`, "
        f"{results['checkpoint']['size_bytes'] / 1e6:.1f} MB, {results['checkpoint']['tensors']} tensors.",
        "",
        f"## Warm cache (median of {n} fresh processes per side, interleaved)",
        "",
        warm_table,
        "",
        "Imports before the timed region (median ms): "
        + "; ".join(
            f"{side}: " + ", ".join(f"{k} {v['median']:.0f}" for k, v in w[key]["imports_ms_by_step"].items())
            for side, key in (("ours", "ours"), ("torchvision", "torchvision"))
        )
        + ". Modules still imported inside the timed load: ours "
        + (", ".join(f"`{m}`" for m in ours["modules_imported_during_load"]) or "none")
        + "; torchvision "
        + (", ".join(f"`{m}`" for m in tv["modules_imported_during_load"]) or "none")
        + ".",
        "",
    ]
    lines += [
        "## The sha256 and the other paths",
        "",
        costs_table,
        "",
        f"## Where fpn_zoo's load spends its time (phase runs with timing wrappers, median of "
        f"{results['phase_runs']['warm_runs']} warm and {cold['wall_ms']['n']} cold)",
        "",
        phases_table,
        "",
    ]
    check = results["check"]
    lines += [
        "## Like for like",
        "",
        f"- Same function: state dicts equal tensor for tensor = {check['state_dict_tensors_equal']}; "
        f"{check['image']}: {check['detections']['ours']} / {check['detections']['torchvision']} detections, "
        f"max abs diff boxes {check['max_abs_diff']['boxes']}, scores {check['max_abs_diff']['scores']}, same labels "
        f"{check['same_labels']} -> **{'match' if check['match'] else 'NO MATCH'}**.",
        "- torchvision pays, ours does not: the random initialisation of all 41.8 M parameters (kaiming/normal "
        "init of every conv and linear) before they are overwritten, and a second full copy of the weights "
        "(`torch.load` materialises the state dict, `load_state_dict` copies it into the model's own tensors).",
        "- Ours pays, torchvision does not: the manifest lookup and the stat of the cached file against its "
        "verification record, reading config.json, a strict name/shape check against a meta-device build, "
        "and timm's model construction (on the meta device: no memory, no init). Its timm import "
        f"({ours['imports_ms_by_step'][TIMM_IMPORT]['median']:.0f} ms here) runs before the timed region, like "
        "torch's; `imports + load` includes it.",
        f"- The sha256 of the {st['size_bytes'] / 1e6:.0f} MB file ({st['ms']['median']:.0f} ms here) is paid once "
        "per file: after a download and after the conversion, fpn_zoo records the full digest with the file's "
        "real path, size, mtime and inode in `$FPN_ZOO_CACHE/verified/`. Warm loads compare a stat of the file with "
        "that record; any rewrite of the file changes them and triggers a new hash. `FPN_ZOO_VERIFY=always` "
        "hashes on every load.",
        "- Peak RSS is the kernel's VmHWM of the measuring process (imports included); the increase is VmHWM, reset "
        "through /proc/self/clear_refs after the imports, minus VmRSS after malloc_trim. `getrusage(RUSAGE_SELF)."
        "ru_maxrss` right after the load agrees (median ours "
        f"{ours['ru_maxrss_after_load_mib']['median']:.0f}, torchvision "
        f"{tv['ru_maxrss_after_load_mib']['median']:.0f} MiB); on Linux it can also carry a parent's peak through "
        "exec, which is why VmHWM is the figure used.",
        f"- safetensors {versions.get('safetensors')} `load_file` maps the file copy-on-write instead of reading it, "
        "so when `create_model` returns the weights are file-backed pages that the first forward faults in (the "
        "RssFile row). The *weights resident* rows read every tensor byte after the load on both sides (the same "
        "sums), comparing models ready to run. Mapped pages are shared with the page cache and can be dropped "
        "under memory pressure; writing a weight (fine-tuning) copies its page.",
        "- Both files are in the page cache when timed (warm cache); a cold disk would add the read of 167 MB to "
        "torchvision's load and to ours when the weights are first used.",
    ]
    if results["device"].startswith("cuda"):
        lines.append("- CUDA: time to first detection = one forward of a 480x640 image after the load, synchronised.")
    lines += [
        "",
        f"Targets: wall ratio <= {TARGETS['wall_ratio']}: **{verdict['wall_ratio']}**; peak RSS ratio <= "
        f"{TARGETS['peak_rss_ratio']}: **{verdict['peak_rss_ratio']}**. With the weights resident (read once after "
        f"the load): wall **{verdict['resident_wall_ratio']}**, peak RSS **{verdict['resident_peak_rss_ratio']}**.",
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on both sides (default 2)")
    p.add_argument("--repeats", type=int, help="warm measurements per side, >= 7 (default 9; quick: 2)")
    p.add_argument("--warmup", type=int, help="unrecorded warm rounds first (default 1; quick: 0)")
    p.add_argument("--cold-runs", type=int, help="cold loads, each with fresh caches (default 3; quick: 1)")
    p.add_argument("--sha-runs", type=int, help="sha256 timings per file (default 5; quick: 1)")
    p.add_argument("--phase-runs", type=int, help="warm loads with phase timers (default 3; quick: 1)")
    p.add_argument("--first-detection", action="store_true", help="also time one forward after each load "
                   "(default on CUDA)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the random checkpoint (default 0)")
    p.add_argument("--quick", action="store_true", help="smoke check: 2 repeats, 1 cold load, no warm-up")
    p.add_argument("--out", help="results JSON, with the .md beside it (default: docs/results/load-<device>-<date>)")
    p.add_argument("--keep-workdir", action="store_true", help="keep the temporary caches (for debugging)")
    args = p.parse_args(argv)

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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    device, now = torch.device(args.device), datetime.datetime.now(datetime.timezone.utc)
    default_out = REPO / "docs" / "results" / f"load-{device.type}-{now:%Y%m%d}{'-quick' * args.quick}.json"
    out = Path(args.out or default_out)
    log(f"device {device}, threads {args.threads}, repeats {args.repeats}, cold runs {args.cold_runs}"
        f"{' (quick)' * args.quick}")  # fmt: skip
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "date": now.isoformat(timespec="seconds"), "quick": args.quick,
        "command": [Path(sys.executable).name, *sys.argv], "device": str(device), "machine": machine_info(device),
        "versions": library_versions(REPO),
        "settings": {
            "threads": args.threads, "repeats": args.repeats, "warmup_rounds": args.warmup,
            "cold_runs": args.cold_runs, "sha_runs": args.sha_runs, "phase_runs": args.phase_runs,
            "seed": args.seed, "first_detection": args.first_detection, "weights": WEIGHTS_NOTE,
            "ours": OURS_CALL, "torchvision": TV_CALL,
            "timer": "time.perf_counter_ns around the load only; imports done and timed before it",
            "process": "one fresh interpreter per measurement (benchmarks/_load_child.py)",
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
    server = None
    try:
        upstream = work / "upstream"
        upstream.mkdir()
        manifest = work / "weights_manifest.json"
        base_env = child_env(work / "scratch", manifest)
        log("building and saving torchvision's random fasterrcnn_resnet50_fpn (the checkpoint of both sides)")
        ckpt = run_child("setup", base_env, args, "--workdir", str(upstream))
        results["checkpoint"] = ckpt
        server = serve(upstream)
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
        if server is not None:
            server.shutdown()
        if args.keep_workdir:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    r = results["warm"]["ratios"]
    results["targets"] = TARGETS
    results["verdict"] = {
        "wall_ratio": "PASS" if r["wall"] <= TARGETS["wall_ratio"] else "MISS",
        "peak_rss_ratio": "PASS" if r["peak_rss"] <= TARGETS["peak_rss_ratio"] else "MISS",
        # The same targets with the weights read into memory (safetensors maps the file lazily): informative.
        "resident_wall_ratio": "PASS" if r["resident_wall"] <= TARGETS["wall_ratio"] else "MISS",
        "resident_peak_rss_ratio": "PASS" if r["resident_peak_rss"] <= TARGETS["peak_rss_ratio"] else "MISS",
    }
    results["machine"]["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["total_wall_s"] = time.perf_counter() - _START
    text = report(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    for key, verdict in results["verdict"].items():
        target = TARGETS[key.removeprefix("resident_")]
        print(f"{verdict} {key}: {r[key.removesuffix('_ratio')]:.3f} (target <= {target})")
    print(f"Total {results['total_wall_s'] / 60:.1f} min. Raw data: {out} (table: {out.with_suffix('.md')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
