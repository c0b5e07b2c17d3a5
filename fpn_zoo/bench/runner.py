"""Orchestration of ``fpn-zoo bench``: one subprocess per measurement, a progress bar, the results files.

The parent measures nothing itself. It starts ``python -m fpn_zoo.bench.child`` for the reference detector's FLOPs,
then once per model (FLOPs, memory, load), once per input size for the latency of all the models together, and once
per neck; it records a failed job as an ``error`` and goes on, checks that no model came out faster than one it
contains (``ranking.check_consistency``), and writes the results JSON (schema 2, docs/bench-results.md) and the markdown
table beside it.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fpn_zoo.bench.ranking import CI_METHOD, check_consistency
from fpn_zoo.bench.results import SCHEMA, SCHEMA_VERSION, validate_results
from fpn_zoo.bench.settings import SCORE_THRESH, BenchSettings, size_str

__all__ = ["JOB_TIMEOUT_S", "WEIGHTS_NOTE", "BenchRun", "default_out", "run_bench"]

JOB_TIMEOUT_S = 4 * 3600  # one model's full CUDA matrix compiles 16 variants of two detectors per size
WEIGHTS_NOTE = (
    "All weights are random (seeded): no pretrained weights can be downloaded here. Latency, memory and load time do "
    "not depend on the values as long as the work is the same, so every detector runs with score threshold 0.0 and "
    "returns its full 100 detections per image; the RPN proposals per image, which set the RoI stage's cost, are "
    "recorded in each model's workload. At threshold 0.0 the final class-wise NMS sees every RoI x class pair (90,000 "
    "for COCO), far more than trained weights leave above the usual 0.05; the fast path's NMS stops once its 100 "
    "detections are decided, so at this setting it saves more than it would on trained weights."
)


@dataclass
class BenchRun:
    """What ``run_bench`` produced.

    Attributes:
        results: The results dict (schema 2), as written.
        json_path: The results JSON.
        markdown_path: The markdown table beside it.
        failures: One line per failed job (model, neck or reference); empty when all succeeded.
    """

    results: dict[str, Any]
    json_path: Path
    markdown_path: Path
    failures: list[str] = field(default_factory=list)


def default_out(device: str, now: datetime.datetime | None = None) -> Path:
    """``docs/results/bench-{device}-{YYYYMMDDTHHMM}.json`` under the current directory (device type only).

    Examples:
        >>> default_out("cuda:0", datetime.datetime(2026, 11, 21, 18, 2)).as_posix()
        'docs/results/bench-cuda-20261121T1802.json'
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return Path("docs") / "results" / f"bench-{device.split(':')[0]}-{now:%Y%m%dT%H%M}.json"


def _settings_record(s: BenchSettings) -> dict[str, Any]:
    return {
        **s.to_dict(), "memory_size": size_str(s.memory_size), "score_thresh": SCORE_THRESH, "weights": WEIGHTS_NOTE,
        "timer": "time.perf_counter_ns; torch.cuda.synchronize before and after each call on CUDA",
        "interleaving": "latency: one process per size holds every model, its fast path and the reference; after "
        "warm-up rounds, each timed round calls each once in a freshly shuffled order (seeded: order_seed and the "
        "orders are in latency_rounds). Necks and loads: rounds alternate ours, reference | reference, ours | ...",
        "ratio_ci": CI_METHOD,
        "grad_mode": "torch.inference_mode; bf16 = torch.autocast(bfloat16) with float32 weights",
        "isolation": "one fresh subprocess per model (FLOPs, memory, load) and per neck, and one per size for the "
        "latency of all models together (python -m fpn_zoo.bench.child)",
        "load": "cold = the weights file evicted from the page cache (fsync, then posix_fadvise DONTNEED), libraries "
        "already imported; warm = the file in the page cache. Ready = built, weights assigned, one element per "
        "memory page of every tensor read, CUDA synchronised. Ours: create_model(name, weights=DIR) of an export "
        "folder; reference: fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) + "
        "load_state_dict(torch.load(PTH, weights_only=True)).",
        "neck_rows": "fp32, batch 1, eager, contiguous; random ResNet-50 C2-C5 maps (256/512/1024/2048 channels)",
        "flops": "fpn_zoo.inspect_model.count_flops (ours) and FlopCounterMode (reference), both with RPN NMS off "
        "so the RoI heads see up to 1000 proposals; 2 FLOPs per multiply-add, batch 1",
    }  # fmt: skip


def _one_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:400] if lines else "no message"


def _run_child(job: dict[str, Any], workdir: Path, index: int) -> tuple[Any, str | None, str]:
    """Run one job in a fresh process; returns ``(result, error line or None, stderr)``."""
    job_path, out_path = workdir / f"job{index}.json", workdir / f"out{index}.json"
    job_path.write_text(json.dumps(job))
    cmd = [sys.executable, "-m", "fpn_zoo.bench.child", str(job_path), str(out_path)]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=JOB_TIMEOUT_S, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
        return None, f"timed out after {JOB_TIMEOUT_S} s", stderr
    if proc.returncode != 0 or not out_path.is_file():
        return None, f"exit code {proc.returncode}: {_one_line(proc.stderr)}", proc.stderr
    return json.loads(out_path.read_text()), None, proc.stderr


def _failed_model(name: str, error: str, stderr: str) -> dict[str, Any]:
    from fpn_zoo.registry import get_model_config

    config = get_model_config(name)
    return {
        "model": name, "backbone": config.backbone, "neck": config.neck, "dataset": config.dataset, "params": None,
        "gflops": None, "latency": [], "memory": None, "load": None, "error": error, "stderr_tail": stderr[-4000:],
    }  # fmt: skip


def _job_label(job: dict[str, Any]) -> str:
    if job["kind"] == "latency":
        return f"latency {job['size']} ({len(job['names'])} models)"
    return {"reference": "reference FLOPs", "model": job["name"], "neck": f"neck {job['name']}"}[job["kind"]]


def _merge_latency(results: dict[str, Any], latency: list[dict[str, Any]]) -> None:
    """Put each size's rows from the shared latency process into the model entries, in the order of the sizes."""
    for part in latency:
        for entry in results["models"]:
            entry["latency"] = entry.get("latency") or []
            if not entry.get("error"):
                entry["latency"] += part["rows"].get(entry["model"], [])
        results.setdefault("latency_rounds", []).extend(part["rounds"])


def run_bench(
    names: list[str], settings: BenchSettings, out: Path, command: list[str], *, progress: bool = True
) -> BenchRun:
    """Measure ``names`` and the neck rows next to their references; write ``out`` and ``out`` with suffix ``.md``.

    Args:
        names: Registered model names, in the order to run them.
        settings: What to measure.
        out: Results JSON to write (its folder is created).
        command: The command line to record.
        progress: Show a tqdm progress bar on stderr.

    Returns:
        The results and the failed jobs; a failed job never stops the others.

    Examples:
        >>> run_bench(["fpn_r50_coco"], BenchSettings(sizes=((128, 128),), runs=3, quick=True),
        ...           Path("/tmp/bench.json"), ["fpn-zoo", "bench"])  # doctest: +SKIP
    """
    import torch
    from tqdm import tqdm

    from fpn_zoo.bench.machine import library_versions, machine_info
    from fpn_zoo.bench.references import DETECTOR_NAME, NECK_KINDS, NECK_REFERENCES
    from fpn_zoo.bench.report import render_markdown

    start, date = time.perf_counter(), datetime.datetime.now(datetime.timezone.utc)
    results: dict[str, Any] = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "date": date.isoformat(timespec="seconds"),
        "command": command, "quick": settings.quick, "device": settings.device,
        "machine": {**machine_info(torch.device(settings.device)), "torch_num_threads": settings.threads},
        "versions": library_versions(),
        "settings": _settings_record(settings),
        "references": {"detector": {"name": DETECTOR_NAME, "params": None, "gflops": None},
                       "fpn_neck": {"name": NECK_REFERENCES["fpn"]}, "bifpn_neck": {"name": NECK_REFERENCES["bifpn"]}},
        "models": [], "necks": [], "failures": [], "total_wall_s": None,
    }  # fmt: skip
    jobs = [{"kind": "reference", "name": DETECTOR_NAME}, *({"kind": "model", "name": n} for n in names)]
    jobs += [{"kind": "latency", "names": names, "size": size_str(size)} for size in settings.sizes]
    if not settings.skip_necks:
        jobs += [{"kind": "neck", "name": kind} for kind in NECK_KINDS]
    failures: list[str] = []
    latency: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="fpn_zoo_bench_jobs_") as tmp,
        tqdm(
            total=len(jobs), desc="fpn-zoo bench", unit="job", file=sys.stderr, disable=not progress, dynamic_ncols=True
        ) as bar,
    ):
        for i, job in enumerate(jobs):
            label = _job_label(job)
            bar.set_postfix_str(label, refresh=True)
            result, error, stderr = _run_child({**job, "settings": settings.to_dict()}, Path(tmp), i)
            if error is not None:
                failures.append(f"{label} ({error})")
                results["failures"].append({"job": label, "error": error, "stderr_tail": stderr[-4000:]})
                bar.write(
                    f"fpn-zoo bench: {label} FAILED ({error}); its stderr:\n{stderr.strip()[-4000:]}", file=sys.stderr
                )
            if job["kind"] == "reference":
                results["references"]["detector"] = result or {"name": DETECTOR_NAME, "params": None,
                                                               "gflops": None, "error": error}  # fmt: skip
            elif job["kind"] == "model":
                results["models"].append(result if error is None else _failed_model(job["name"], error, stderr))
            elif job["kind"] == "latency":
                latency.append(result or {"size": job["size"], "rows": {}, "rounds": [], "error": error})
            elif error is None:
                results["necks"].extend(result)
            bar.update(1)
    _merge_latency(results, latency)
    results["consistency"] = check_consistency(results["models"])
    results["total_wall_s"] = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    markdown_path = out.with_suffix(".md")
    out.write_text(json.dumps(results, indent=1) + "\n")
    markdown_path.write_text(render_markdown(results, source=out.name))
    validate_results(results, out)  # after writing: a bug here must not cost the measurements
    return BenchRun(results, out, markdown_path, failures)


def check_out_path(out: Path) -> Path:
    """``out`` if a results JSON can be written there; a folder or a non-.json name is refused."""
    if out.suffix != ".json":
        raise ValueError(f"--out {str(out)!r}: give a .json file name (the .md table is written beside it)")
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a folder; give a .json file name")
    if out.parent.exists() and not os.access(out.parent, os.W_OK):
        raise ValueError(f"--out {str(out)!r}: cannot write into {str(out.parent)!r}")
    return out
