"""One measuring process of ``fpn-zoo bench``: ``python -m fpn_zoo.bench.child JOB.json OUT.json``.

The parent starts one per model (parameters, FLOPs, peak memory, load time), one per neck, one for the reference
detector's FLOPs, so no allocator cache or memory peak of one measurement leaks into the next, and one ``latency``
process per input size that times every model of the run together (``latency.py``), so that their rows compare.
``JOB.json`` holds ``kind`` (``model``, ``latency``, ``neck`` or ``reference``), ``name`` (or ``names`` and ``size``)
and the run's settings; the result goes to ``OUT.json``. A failure exits non-zero with the traceback on stderr, which
the parent records.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fpn_zoo.bench import references as refs
from fpn_zoo.bench.loadtime import file_mib, measure_load
from fpn_zoo.bench.measure import count_call_flops, measure_peak_memory, paired_ratio, ratio, stats, time_interleaved
from fpn_zoo.bench.settings import SCORE_THRESH, BenchSettings, parse_size, size_str

__all__ = ["main", "measure_model", "measure_neck", "measure_reference"]


class _Phases:
    """Seconds spent in each step of a job, for the JSON (and the run-time estimate in docs/benchmarks.md)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def __call__(self, label: str) -> None:
        now = time.perf_counter()
        self.seconds[label] = self.seconds.get(label, 0.0) + now - self.last
        self.last = now


def _memory(models: dict[str, nn.Module], s: BenchSettings) -> dict[str, Any]:
    device, size = torch.device(s.device), s.memory_size
    batch = refs.images(size, 1, device, s.seed + 1)
    peaks = {}
    for side, model in models.items():
        refs.set_input_size(model, size)
        with torch.inference_mode():
            model(batch)  # untimed: lazy initialisations and oneDNN's first-call setup are not the forward's peak
            peaks[side] = measure_peak_memory(lambda m=model: m(batch), device)
    ours, reference = peaks["ours"]["increase_mib"], peaks["reference"]["increase_mib"]
    return {
        "size": size_str(size),
        "method": peaks["ours"]["method"] + " (batch 1, fp32, eager, after one untimed forward)",
        "ours_mib": ours,
        "reference_mib": reference,
        "ratio": ours / reference if reference else None,
        "detail": peaks,
    }


def _write_weights(name: str, folder: Path, seed: int) -> tuple[Path, Path]:
    """The model's random weights as ``fpn-zoo export`` writes them, and the reference's state dict as a ``.pth``."""
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from fpn_zoo.factory import create_model
    from fpn_zoo.weights.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = create_model(name, device="cpu")
    ours = save_checkpoint(model.state_dict(), model.config, folder / "ours")
    torch.manual_seed(seed)
    pth = folder / "fasterrcnn_resnet50_fpn_random.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), pth)
    return ours, pth


def measure_model(name: str, s: BenchSettings) -> dict[str, Any]:
    """Every figure of one model entry of the results JSON but its latency rows, which the latency process measures."""
    from fpn_zoo.factory import create_model
    from fpn_zoo.inspect_model import count_flops, count_parameters
    from fpn_zoo.registry import get_model_config
    from fpn_zoo.weights.checkpoint import WEIGHTS_FILENAME

    device, config, phase = torch.device(s.device), get_model_config(name), _Phases()
    with tempfile.TemporaryDirectory(prefix="fpn_zoo_bench_") as tmp:
        weights_dir, pth = _write_weights(name, Path(tmp), s.seed)
        phase("export_weights")
        models = {
            "ours": create_model(name, weights=weights_dir, device=device, box_score_thresh=SCORE_THRESH),
            "reference": refs.coco_v1_detector(s.seed).to(device),
        }
        if s.fast:
            models["fast"] = create_model(
                name, weights=weights_dir, device=device, box_score_thresh=SCORE_THRESH, fast=True
            )
        phase("build")
        smallest = min(s.sizes, key=lambda size: size[0] * size[1])
        workload = {}
        for side, model in models.items():
            refs.set_input_size(model, smallest)
            workload[side] = refs.detector_workload(model, refs.images(smallest, 1, device, s.seed + 1))
        phase("workload_check")
        memory = _memory(models, s)
        phase("memory")
        del models
        gflops = {size_str(size): count_flops(config, *size, seed=s.seed).gflops for size in s.sizes}
        phase("flops")
        load = None
        if not s.skip_load:
            weights_file = weights_dir / WEIGHTS_FILENAME
            loads = {
                "ours": (lambda: create_model(name, weights=weights_dir, device=device), weights_file),
                "reference": (lambda: refs.load_reference_detector(str(pth), device), pth),
            }
            load = {
                "weights_mib": file_mib(weights_file),
                "reference_weights_mib": file_mib(pth),
                **measure_load(loads, runs=s.load_runs, device=device),
            }
            phase("load")
    return {
        "model": name, "backbone": config.backbone, "neck": config.neck, "dataset": config.dataset,
        "params": count_parameters(config), "gflops": gflops, "latency": [], "memory": memory, "load": load,
        "error": None, "timm_backbone": config.backbone_spec.timm_name, "workload": {"size": size_str(smallest),
        **workload}, "phases_s": phase.seconds, "child_wall_s": time.perf_counter() - phase.start,
    }  # fmt: skip


def _forward_neck(fn: Any) -> Any:
    def call() -> Any:
        with torch.inference_mode():
            return fn()

    return call


def measure_neck(kind: str, s: BenchSettings) -> list[dict[str, Any]]:
    """The neck rows of ``kind`` at every size: fp32, batch 1, eager (see docs/bench-results.md)."""
    device, rows = torch.device(s.device), []
    for size in s.sizes:
        pair = refs.build_neck_pair(kind, size, device, s.seed)
        sides = {"ours": pair.ours, "reference": pair.reference}
        with torch.inference_mode():
            gflops = {side: count_call_flops(fn)[0] / 1e9 for side, fn in sides.items()}
        fns = {side: _forward_neck(fn) for side, fn in sides.items()}
        times = time_interleaved(fns, warmup=s.warmup, runs=s.runs, device=device)
        ours, reference = stats(times["ours"]), stats(times["reference"])
        rows.append({
            "neck": kind, "size": size_str(size), "reference_name": pair.reference_name,
            "equivalent": pair.equivalent, "ours": ours, "reference": reference, "ratio": ratio(ours, reference),
            "paired_ratio": paired_ratio(times["ours"], times["reference"]), "max_abs_diff": pair.max_abs_diff,
            "gflops": gflops["ours"], "reference_gflops": gflops["reference"], "precision": "fp32", "batch": 1,
            "config": pair.config,
        })  # fmt: skip
    return rows


def measure_reference(s: BenchSettings) -> dict[str, Any]:
    """Parameters and GFLOPs of the reference detector, counted as ``fpn_zoo.inspect_model.count_flops`` counts ours.

    RPN NMS is switched off for the count, as there, so the RoI heads see the test-time maximum of 1000 proposals.
    """
    model = refs.coco_v1_detector(s.seed)
    model.rpn.nms_thresh = 1.0  # IoU never exceeds 1, so NMS keeps every candidate
    gflops = {}
    for size in s.sizes:
        refs.set_input_size(model, size)
        batch = refs.images(size, 1, torch.device("cpu"), s.seed)
        with torch.inference_mode():
            gflops[size_str(size)] = count_call_flops(lambda b=batch: model(b))[0] / 1e9
    return {
        "name": refs.DETECTOR_NAME,
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": gflops,
        "build": "as its COCO_V1 builder: FrozenBatchNorm2d with eps 0.0; random weights (seeded, scaled)",
        "load_build": "fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None) + "
        "load_state_dict(torch.load(PTH, weights_only=True))",
    }


def run_job(job: dict[str, Any]) -> Any:
    """Run one job description (``kind``, ``name``, ``settings``) and return its JSON-ready result."""
    s = BenchSettings.from_dict(job["settings"])
    torch.set_num_threads(s.threads)
    torch.manual_seed(s.seed)
    if job["kind"] == "model":
        return measure_model(job["name"], s)
    if job["kind"] == "neck":
        return measure_neck(job["name"], s)
    if job["kind"] == "reference":
        return measure_reference(s)
    if job["kind"] == "latency":
        from fpn_zoo.bench.latency import measure_latency

        return measure_latency(job["names"], parse_size(job["size"]), s)
    raise ValueError(f"Unknown job kind {job['kind']!r}; expected model, latency, neck or reference.")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fpn_zoo.bench.child JOB.json OUT.json``."""
    job_path, out_path = argv if argv is not None else sys.argv[1:]
    warnings.filterwarnings("ignore", category=FutureWarning)  # effdet calls the deprecated torch.jit.script
    result = run_job(json.loads(Path(job_path).read_text()))
    Path(out_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
