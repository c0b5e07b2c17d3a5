"""One message, two faces: keyword arguments from Python, flags from the CLI (fpn_zoo.voice)."""

from __future__ import annotations

import pytest
from conftest import PYTHON_ADVICE

from fpn_zoo import voice
from fpn_zoo.cli import main
from fpn_zoo.weights.resolve import WeightsNotAvailableError, select_entry


def test_options_render_for_the_listener():
    assert voice.option("weights", placeholder="PATH") == "weights=PATH"
    assert voice.option("device", "cpu") == "device='cpu'"
    assert voice.option("pretrained", True) == "pretrained=True"
    with voice.cli_voice("fpn-zoo predict", {"--weights", "--device", "--pretrained", "--score-thr"}):
        assert voice.option("weights", placeholder="PATH") == "--weights PATH"
        assert voice.option("device", "cpu") == "--device cpu"
        assert voice.option("pretrained", True) == "--pretrained"
        assert voice.option("out", "a b") == "--out 'a b'"  # quoted as a shell needs it
        assert voice.option("box_score_thresh", 0.5) == "--score-thr 0.5"
        assert voice.offers("weights") and not voice.offers("pretrained_backbone")
        assert voice.say("python", "cli") == "cli" and voice.command() == "fpn-zoo predict"
    assert not voice.in_cli() and voice.command() is None  # the block's end restores Python


def test_the_same_error_names_keyword_arguments_from_python_and_flags_from_the_cli(capsys):
    with pytest.raises(WeightsNotAvailableError) as python_error:
        select_entry("bifpn_r50_coco", True)
    text = str(python_error.value)
    assert "weights=PATH" in text and "pretrained_backbone=True" in text and "random init" in text
    assert main(["predict", "--model", "bifpn_r50_coco", "--pretrained"]) == 2
    cli_text = capsys.readouterr().err
    assert "--weights PATH" in cli_text and "--random-init" in cli_text and "fpn-zoo info bifpn_r50_coco" in cli_text
    assert not PYTHON_ADVICE.search(cli_text)
