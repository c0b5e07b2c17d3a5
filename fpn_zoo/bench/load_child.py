"""One measurement of ``fpn-zoo bench load`` in a fresh process: ``python -m fpn_zoo.bench.load_child MODE --out R``.

Modes:
    setup        torchvision's ``fasterrcnn_resnet50_fpn`` with seeded random weights, saved as a ``.pth`` named like
                 torchvision's checkpoints (``fasterrcnn_resnet50_fpn_coco-<first 8 hex of its sha256>.pth``).
    ours         ``fpn_zoo.create_model("fpn_r50_coco", pretrained=True, device=...)``, timed and its peak RSS taken.
    torchvision  ``fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` +
                 ``load_state_dict(torch.load(PTH))``, timed in three phases, its peak RSS taken.
    sha256       the cost of hashing a weights file (what a warm load skips) and of the check that replaces it.
    check        both loaded models: same tensors, same detections on one small image.

The imports run first and are timed apart: the timed region starts once everything the load needs is imported (for
fpn_zoo that includes timm, which ``create_model`` would otherwise import on first use). Modules that the timed call
still imports are listed in the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MODEL", "main"]

_T0 = time.perf_counter()
MODEL = "fpn_r50_coco"


def _ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def _import(mode: str) -> dict[str, float]:
    """Import what ``mode`` needs, timed per step (ms)."""
    steps: dict[str, float] = {}

    def step(label: str, fn: Callable[[], Any]) -> None:
        start = time.perf_counter_ns()
        fn()
        steps[label] = _ms(start)

    step("torch", lambda: __import__("torch"))
    step("torchvision", lambda: __import__("torchvision.models.detection"))
    if mode in ("ours", "check", "sha256"):
        step("fpn_zoo (create_model: factory, detector, weights)", lambda: __import__("fpn_zoo.factory"))
        step("fpn_zoo.weights.upstream", lambda: __import__("fpn_zoo.weights.upstream"))
        step("timm (deferred import of create_model)", lambda: __import__("timm"))
    return steps


class Phases:
    """Wall time and call count of chosen functions, by replacing module attributes with timing wrappers.

    Used only in runs marked as phase runs: the headline timings come from runs without any wrapper.
    """

    def __init__(self) -> None:
        self.order: list[str] = []
        self.ms: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, module: Any, attr: str, label: str) -> None:
        original = getattr(module, attr)
        if label not in self.order:
            self.order.append(label)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return original(*args, **kwargs)
            finally:
                self.ms[label] = self.ms.get(label, 0.0) + _ms(start)
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(module, attr, timed)

    def install_fpn_zoo(self) -> None:
        import fpn_zoo.factory as factory
        import fpn_zoo.weights.checkpoint as checkpoint
        import fpn_zoo.weights.convert as convert
        import fpn_zoo.weights.integrity as integrity
        import fpn_zoo.weights.upstream as upstream

        # create_model's steps in call order; indented labels run inside the unindented one above them.
        self.wrap(factory, "resolve_pretrained", "resolve_pretrained (manifest, cache check; cold: fetch + convert)")
        self.wrap(integrity, "is_recorded", "  is_recorded (stat against the verification record)")
        self.wrap(upstream, "download_url", "  download_url (loopback HTTP)")
        for module in (integrity, upstream, convert):
            self.wrap(module, "sha256_file", "  sha256_file (every call, whichever file)")
        self.wrap(convert, "convert_checkpoint", "  convert_checkpoint")
        self.wrap(convert, "read_upstream_file", "    torch.load of the .pth (weights only)")
        self.wrap(checkpoint, "save_file", "    safetensors save_file")
        self.wrap(factory, "read_checkpoint", "read_checkpoint (config.json)")
        self.wrap(factory, "build_detector", "build_detector on the meta device")
        self.wrap(factory, "check_state_dict", "check_state_dict (names and shapes)")
        self.wrap(checkpoint, "load_file", "safetensors load_file (maps the file; bytes read on first use)")
        self.wrap(factory, "assign_state_dict", "assign_state_dict (load_state_dict assign=True)")
        self.wrap(factory, "_materialize", "_materialize (num_batches_tracked)")

    def as_dict(self) -> dict[str, Any]:
        labels = [label for label in self.order if label in self.ms] + [x for x in self.ms if x not in self.order]
        return {label: {"ms": self.ms[label], "calls": self.calls[label]} for label in labels}


def _rss_split(status_kib: Callable[[str], int | None]) -> dict[str, float]:
    return {key: (status_kib(key) or 0) / 1024 for key in ("VmRSS", "RssAnon", "RssFile")}


def _first_detection_ms(model: Any, device: Any, torch: Any) -> float:
    image = torch.rand(3, 480, 640, generator=torch.Generator().manual_seed(0)).to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter_ns()
    with torch.inference_mode():
        model([image])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return _ms(start)


def measure_load(args: argparse.Namespace, imports_ms: dict[str, float]) -> dict[str, Any]:
    import resource

    import torch

    from fpn_zoo.bench.measure import measure_peak_rss, proc_status_kib

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    phases = Phases()
    if args.phases and args.mode == "ours":
        phases.install_fpn_zoo()
    held: dict[str, Any] = {}
    modules_before = set(sys.modules)

    if args.mode == "ours":
        from fpn_zoo import create_model

        def load() -> None:
            start = time.perf_counter_ns()
            held["model"] = create_model(MODEL, pretrained=True, device=device)
            held["ms"] = _ms(start)

    else:
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        def load() -> None:
            # What a torchvision user writes to load a local copy of the same checkpoint.
            start = time.perf_counter_ns()
            model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
            t_build = time.perf_counter_ns()
            state = torch.load(args.pth, map_location="cpu", weights_only=True)
            t_load = time.perf_counter_ns()
            model.load_state_dict(state)
            del state
            held["model"] = model.to(device).eval()
            end = time.perf_counter_ns()
            held["ms"] = (end - start) / 1e6
            phases.ms = {
                "construction (random init)": (t_build - start) / 1e6,
                "torch.load": (t_load - t_build) / 1e6,
                "load_state_dict (+ .eval())": (end - t_load) / 1e6,
            }
            phases.calls = dict.fromkeys(phases.ms, 1)

    rss = measure_peak_rss(load)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    imported = sorted(set(sys.modules) - modules_before)
    ru_maxrss_after_load_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = held["model"]
    after_load = _rss_split(proc_status_kib)
    # safetensors maps the file (copy-on-write) instead of reading it, so after create_model the weights are not yet
    # resident: the first forward faults them in. Reading every byte of every tensor (the same sums on both sides)
    # makes the two sides comparable as "weights in memory, ready to run".
    # One thread for the sums: OpenMP threads that spin-wait make a many-threaded sum very sensitive to other load.
    torch.set_num_threads(1)
    start = time.perf_counter_ns()
    with torch.no_grad():
        checksum = sum(float(t.float().sum()) for t in model.state_dict().values())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    touch_ms = _ms(start)
    torch.set_num_threads(args.threads)
    resident_peak_mib = (proc_status_kib("VmHWM") or 0) / 1024
    result = {
        "mode": args.mode,
        "verify_env": args.verify_env,
        "wall_ms": held["ms"],
        "imports_ms": imports_ms,
        "import_total_ms": sum(imports_ms.values()),
        "rss": rss,
        "rss_after_load_mib": after_load,
        "touch_ms": touch_ms,
        "load_plus_touch_ms": held["ms"] + touch_ms,
        "resident": {
            "peak_mib": resident_peak_mib,
            "increase_mib": resident_peak_mib - rss["baseline_mib"],
            "process_peak_rss_mib": max(resident_peak_mib, rss["process_peak_rss_mib"]),
            "rss_after_touch_mib": _rss_split(proc_status_kib),
        },
        "weights_checksum": checksum,
        "ru_maxrss_after_load_mib": ru_maxrss_after_load_mib,
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "phases": phases.as_dict(),
        "phase_order": phases.order,
        "modules_imported_during_load": imported,
        "params": sum(p.numel() for p in model.parameters()),
        "torch_num_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if args.first_detection:
        result["first_detection_ms"] = _first_detection_ms(model, device, torch)
    return result


def setup(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from fpn_zoo.weights.integrity import sha256_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    tmp = Path(args.workdir) / "fasterrcnn_resnet50_fpn_coco.pth.tmp"
    torch.save(model.state_dict(), tmp)
    digest = sha256_file(tmp)
    final = tmp.with_name(f"fasterrcnn_resnet50_fpn_coco-{digest[:8]}.pth")
    tmp.replace(final)
    state = model.state_dict()
    return {
        "path": str(final),
        "filename": final.name,
        "sha256": digest,
        "size_bytes": final.stat().st_size,
        "tensors": len(state),
        "params": sum(p.numel() for p in model.parameters()),
        "state_dict_numel": sum(t.numel() for t in state.values()),
        "seed": args.seed,
    }


def sha256_cost(args: argparse.Namespace) -> dict[str, Any]:
    from fpn_zoo.weights.integrity import is_recorded, sha256_file

    out: dict[str, Any] = {}
    for label, path in (("safetensors", Path(args.safetensors)), ("pth", Path(args.pth))):
        times, digest = [], ""
        for _ in range(args.runs):
            start = time.perf_counter_ns()
            digest = sha256_file(path)
            times.append(_ms(start))
        out[label] = {"path": str(path), "size_bytes": path.stat().st_size, "sha256": digest, "times_ms": times}
    record_times = []
    weights = Path(args.safetensors)
    digest = out["safetensors"]["sha256"]
    for _ in range(max(args.runs, 20)):
        start = time.perf_counter_ns()
        ok = is_recorded(weights, digest)
        record_times.append(_ms(start))
    out["record_check"] = {"recorded": ok, "times_ms": record_times}
    return out


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Same tensors and same detections (score threshold 0.0, so every one of the 100 boxes is compared)."""
    import torch
    from torchvision.models.detection import fasterrcnn_resnet50_fpn

    from fpn_zoo import create_model
    from fpn_zoo.converters import torchvision as torchvision_converter

    torch.set_num_threads(args.threads)
    hw = dict(min_size=256, max_size=320, box_score_thresh=0.0)
    ours = create_model(MODEL, pretrained=True, device="cpu", **hw)
    ref = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, **hw)
    ref.load_state_dict(torch.load(args.pth, map_location="cpu", weights_only=True))
    ref.eval()
    ours_sd, ref_sd = ours.state_dict(), torchvision_converter.convert(ref.state_dict()).state_dict
    ours_sd = {k: v for k, v in ours_sd.items() if not k.endswith("num_batches_tracked")}
    same_keys = set(ours_sd) == set(ref_sd)
    tensors_equal = same_keys and all(torch.equal(ours_sd[k], ref_sd[k]) for k in ours_sd)
    image = [torch.rand(3, 256, 320, generator=torch.Generator().manual_seed(args.seed + 1))]
    with torch.inference_mode():
        got, expected = ours(image)[0], ref(image)[0]
    same_shape = got["boxes"].shape == expected["boxes"].shape
    diff = {
        key: (got[key] - expected[key]).abs().max().item() if same_shape and len(got[key]) else None
        for key in ("boxes", "scores")
    }
    same_labels = torch.equal(got["labels"], expected["labels"])
    tol = 1e-4
    return {
        "image": "one random 3x256x320 image (seed + 1), min_size 256, max_size 320, box_score_thresh 0.0",
        "state_dict_keys_equal": same_keys,
        "state_dict_tensors_equal": tensors_equal,
        "detections": {"ours": len(got["boxes"]), "torchvision": len(expected["boxes"])},
        "max_abs_diff": diff,
        "same_labels": same_labels,
        "tolerance": tol,
        "match": bool(
            tensors_equal and same_shape and same_labels and all(d is not None and d <= tol for d in diff.values())
        ),
        "frozen_bn_eps_ours": getattr(ours.config, "frozen_bn_eps", None),
    }


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and write its JSON to ``--out`` (the parent reads it; exit status 0)."""
    p = argparse.ArgumentParser(prog="python -m fpn_zoo.bench.load_child")
    p.add_argument("mode", choices=("setup", "ours", "torchvision", "sha256", "check"))
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pth")
    p.add_argument("--safetensors")
    p.add_argument("--workdir")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--phases", action="store_true")
    p.add_argument("--first-detection", action="store_true")
    p.add_argument("--verify-env", default="")
    args = p.parse_args(argv)
    imports_ms = _import(args.mode)
    if args.mode in ("ours", "torchvision"):
        result = measure_load(args, imports_ms)
    else:
        result = {"setup": setup, "sha256": sha256_cost, "check": check}[args.mode](args)
        result["imports_ms"] = imports_ms
    result["child_wall_s"] = time.perf_counter() - _T0
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
