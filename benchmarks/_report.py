"""Markdown tables of the benchmark results."""

from __future__ import annotations

import argparse
from typing import Any

from _measure import markdown_table
from _pairs import size_str


def pairs_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    def ms(s: dict[str, Any]) -> str:
        return f"{s['median_ms']:.1f} / {s['min_ms']:.1f} / {s['iqr_ms']:.1f}"

    header = [
        "comparison",
        "size",
        "precision",
        "ours ms (median / min / IQR)",
        "reference ms (median / min / IQR)",
        "ratio",
        "paired ratio",
        "target",
        "meets target",
        "GFLOPs ours / ref",
        "outputs match (max abs diff)",
    ]
    body = [
        [
            r["comparison"],
            r["size"],
            r["precision"],
            ms(r["ours"]),
            ms(r["reference"]),
            f"{r['ratio']:.3f}",
            f"{r['paired_ratio_median']:.3f}",
            f"<= {r['target']:.2f}",
            "yes" if r["meets_target"] else "NO",
            f"{r['gflops']['ours']:.1f} / {r['gflops']['reference']:.1f}",
            f"{'yes' if r['outputs_match'] else 'NO'} ({r['check']['max_abs_diff']:.1e})",
        ]
        for r in rows
    ]
    title = f"## Side by side ({args.device}, median of {args.runs} interleaved runs after {args.warmup} warm-up)"
    note = (
        "ratio = median(ours) / median(reference); paired ratio = median over rounds of ours_i / reference_i. "
        "Outputs are compared once, in fp32."
    )
    return f"{title}\n\n{markdown_table(header, body, 'lllrrrrrlrl')}\n\n{note}"


def models_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    cpu = not args.device.startswith("cuda")
    lats = [f"latency ms {p} (median of {args.model_runs})" for p in args.precisions]
    header = [
        "model",
        "backbone",
        "neck",
        "params (M)",
        "GFLOPs",
        "neck GFLOPs",
        "peak tensor MiB",
        *(["peak RSS increase MiB", "process peak RSS MiB"] if cpu else []),
        *lats,
    ]
    body = []
    for r in rows:
        if "error" in r:
            body.append(
                [
                    r["name"],
                    "error: " + r["error"].strip().splitlines()[-1][-120:].replace("|", "/"),
                    *[""] * (len(header) - 2),
                ]
            )
            continue
        neck = sum(v for k, v in r["gflops_by_module"].items() if k.endswith((".backbone.neck", ".backbone.fpn")))
        rss = [f"{r['peak_rss']['increase_mib']:.0f}", f"{r['peak_rss']['process_peak_rss_mib']:.0f}"] if cpu else []
        body.append(
            [
                r["name"],
                r["backbone"],
                r["neck"],
                f"{r['params'] / 1e6:.2f}",
                f"{r['gflops']:.1f}",
                f"{neck:.1f}",
                f"{r['peak_tensor_memory']['increase_mib']:.0f}",
                *rss,
                *(f"{r['latency'][p]['median_ms']:.0f}" for p in args.precisions),
            ]
        )
    title = f"## Models at {size_str(args.model_size)} ({args.device}, batch 1, one fresh process per model)"
    note = (
        "params: default build (ordinary BatchNorm, so its affine terms count). GFLOPs: FlopCounterMode, 2 per "
        "MAC, convolutions and matmuls only. Peak memory: one forward under torch.no_grad, above what was "
        "allocated before it (tensor: allocator events, repeatable; RSS: first forward of the process)."
    )
    return f"{title}\n\n{markdown_table(header, body, 'lll' + 'r' * (len(header) - 3))}\n\n{note}"
