"""The weights part of a model page: every tag with its upstream file, reported AP, inference settings and how to
load it, then how each conversion was proven and what could not be verified."""

from __future__ import annotations

from fpn_zoo.config import ModelConfig
from fpn_zoo.docs_site.proofs import COMMON_PROOFS, UPSTREAM_NAMES, Proof, ProofMatch, limits, proof_for
from fpn_zoo.docs_site.weights_cell import STATUS_TEXT
from fpn_zoo.docs_site.weights_tags import WeightsTag, inference_settings
from fpn_zoo.inspect_model import describe_inference

__all__ = ["weights_section"]

MANIFEST_RULE = "../../manifest.md#weights-entry"
GUIDE = "../../guides/converting.md"
STATUS_NOTES = {
    "published": "published on the Hugging Face Hub, pinned to one commit; its sha256 is checked before first use",
    "convertible": "the upstream checkpoint is downloaded on first use, checked against the hash its upstream "
    f"publishes, [converted]({GUIDE}) once and cached",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _settings(tag: WeightsTag, config: ModelConfig) -> str:
    settings = inference_settings(tag.entry, config)
    if settings is None:
        return "the settings recorded in its `config.json`"
    fields = ", ".join(f"`{k}={v!r}`" for k, v in settings.items())
    return f"{describe_inference(settings)} (written into the converted `config.json`: {fields})"


def _proof_cell(match: ProofMatch | None) -> str:
    if match is None:
        return "no test compares this upstream model with the converted one yet"
    proof = match.proof
    link = f"[{proof.title}](#{proof.anchor})"
    score, box = proof.tolerances()
    where = f"`{proof.test}`, scores within {score}, boxes within {box} px"
    if match.same_config:
        return f"{link}: {where}"
    if match.differs:
        differs = ", ".join(f"`{d}`" for d in match.differs)
        return f"{link}, whose config differs from this one's only in {differs}: {where}"
    return f"{link}, whose config builds the same model and test pipeline as this one's: {where}"


def _not_verified_cell(tag: WeightsTag) -> str:
    upstream = tag.entry.upstream
    if upstream is None:
        return ""
    who = UPSTREAM_NAMES[upstream.converter]
    extra = "" if upstream.converter == "torchvision" else "; pre-processing differs slightly from mmdetection's"
    return (
        f"the real file, never downloaded here (its hash is known by the prefix in its name only), and its AP "
        f"({who}'s claim){extra}: [details](#what-could-not-be-verified)"
    )


def _load_cell(name: str, tag: str) -> str:
    return (
        f'`fpn_zoo.create_model("{name}", pretrained="{tag}")`, '
        f"`fpn-zoo predict photo.jpg --model {name} --pretrained {tag}`; "
        f"`fpn-zoo download {name} --tag {tag}` (for offline use)"
    )


def _tag_section(name: str, tag: WeightsTag, config: ModelConfig) -> list[str]:
    entry, link = tag.entry, tag.link
    default = " (default)" if tag.default else ""
    lines = [f"### `{tag.tag}`{default} {{ #{tag.anchor} }}", ""]
    if tag.default:
        lines += [
            "`pretrained=True` loads these weights: of the entries with weights to load, this one has the highest "
            f"box AP on COCO val2017 ([the rule]({MANIFEST_RULE})).",
            "",
        ]
    if not entry.available:
        return [
            *lines,
            f"Not trained yet: no weights to load. Label space `{entry.label_space}` ({len(entry.categories)} class "
            "slots); [how to train](#how-to-train) it.",
            "",
        ]
    rows = [("Status", f"{STATUS_TEXT[entry.status]}: {STATUS_NOTES[entry.status]}")]
    if entry.upstream is not None:
        upstream = entry.upstream
        who = UPSTREAM_NAMES[upstream.converter]
        rows.append(("Upstream checkpoint", f"[`{upstream.filename}`]({upstream.url}) by {who}: {entry.source}"))
    elif entry.hub is not None:
        rows.append(("Hub", f"[`{entry.hub.repo_id}`]({link.url}) at commit `{entry.hub.revision}`: {entry.source}"))
    if link.sha256:
        checked = "read off the file name, checked before conversion" if link.sha256_kind != "sha256" else "checked"
        rows.append(("sha256", f"{link.sha256_kind} `{link.sha256}` ({checked})"))
    rows += [("Licence", entry.license or "not stated"), ("Training recipe", entry.recipe)]
    rows.append(("Label space", f"`{entry.label_space}` ({len(entry.categories)} class slots)"))
    if tag.coco_ap is not None:
        source = tag.coco_ap.source
        rows.append(("COCO val2017 box AP", f"**{tag.coco_ap.text}**: {source.note} (recorded {source.date})"))
    rows += [
        ("Runs with", _settings(tag, config)),
        ("Load", _load_cell(name, tag.tag)),
        ("Proven by", _proof_cell(proof_for(entry))),
    ]
    if entry.upstream is not None:
        rows.append(("Not verified", _not_verified_cell(tag)))
    return [*lines, "| | |", "|---|---|", *(f"| {key} | {_cell(value)} |" for key, value in rows), ""]


def _proofs(tags: tuple[WeightsTag, ...]) -> list[str]:
    matches: dict[str, tuple[Proof, list[tuple[WeightsTag, ProofMatch]]]] = {}
    for tag in tags:
        match = proof_for(tag.entry)
        if match is not None:
            matches.setdefault(match.proof.anchor, (match.proof, []))[1].append((tag, match))
    converters = sorted({t.entry.upstream.converter for t in tags if t.entry.upstream is not None})
    if not matches and not converters:
        return []
    lines = [
        "## How the conversions were proven",
        "",
        "Each test below runs in the default test suite on the CPU. It builds the upstream's own model, gives it "
        "seeded random weights in the upstream's layout, saves them as the upstream publishes files, converts that "
        "file with `fpn-zoo convert`'s code and compares the detections of both models. Random weights prove the "
        "mapping and the computation; they say nothing about accuracy.",
        "",
    ]
    for proof, covered in matches.values():
        lines += [
            f"### {proof.title} {{ #{proof.anchor} }}",
            "",
            f"- Tags: {', '.join(f'[`{t.tag}`](#{t.anchor})' for t, _ in covered)}",
            f"- Tests: {', '.join(f'`{test_id}`' for test_id in proof.pytest_ids())}",
            f"- Against: {proof.upstream}",
            f"- Data: {proof.data}",
            f"- Passes when: {proof.tolerance()}",
        ]
        for tag, match in covered:
            if match.same_config:
                continue
            if match.differs:
                differs = ", ".join(f"`{d}`" for d in match.differs)
                how = f"builds the same model and test pipeline except {differs}: {match.covered}"
            else:
                how = "builds the same model and test pipeline; only training differs"
            lines.append(
                f"- `{tag.tag}` was trained with `configs/{match.config}`, which {how}. `tests/test_docs_site.py` "
                "compares the two configs with mmengine."
            )
        lines.append("")
    common = [*COMMON_PROOFS["all"], *(p for c in converters for p in COMMON_PROOFS[c])]
    if common:
        lines += ["Also, for these weights:", "", *(f"- {text}" for text in common), ""]
    return lines


def _limits(tags: tuple[WeightsTag, ...]) -> list[str]:
    groups: dict[tuple[str, ...], list[str]] = {}
    for tag in tags:
        items = tuple(limits(tag.entry))
        if items:
            groups.setdefault(items, []).append(tag.tag)
    if not groups:
        return []
    lines = ["## What could not be verified", ""]
    for items, names in groups.items():
        lines += [f"For {', '.join(f'`{n}`' for n in names)}:", "", *(f"- {item}" for item in items), ""]
    return lines


def weights_section(name: str, tags: tuple[WeightsTag, ...], config: ModelConfig) -> list[str]:
    """The page's ``## Weights`` section and, for converted weights, their proofs and limits."""
    lines = ["## Weights", ""]
    available = [t for t in tags if t.entry.available]
    if available:
        default = next(t for t in tags if t.default)
        lines += [
            f"{len(available)} weights tag{'s' if len(available) > 1 else ''} to load. `pretrained=True` loads the "
            f'default, `{default.tag}`; `pretrained="TAG"` (`--pretrained TAG` on the command line) loads any other. '
            f"The tags follow the [convention]({MANIFEST_RULE}) `{{dataset}}[_{{origin}}][_{{recipe}}]`.",
            "",
            "| Tag | COCO val2017 box AP | From | Status |",
            "|---|---:|---|---|",
        ]
        for tag in available:
            ap = "" if tag.coco_ap is None else f"{tag.coco_ap.text} ({tag.coco_ap.source.date})"
            origin = UPSTREAM_NAMES[tag.entry.upstream.converter] if tag.entry.upstream else "fpn-zoo"
            mark = " **default**" if tag.default else ""
            lines.append(f"| [`{tag.tag}`](#{tag.anchor}){mark} | {ap} | {origin} | {STATUS_TEXT[tag.entry.status]} |")
        lines += ["", "Each AP carries the date it was recorded; its tag's section says who measured it.", ""]
    for tag in tags:
        lines += _tag_section(name, tag, config)
    return [*lines, *_proofs(tags), *_limits(tags)]
