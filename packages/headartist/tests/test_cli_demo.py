from __future__ import annotations

import json

import pytest
from headartist.cli import main
from headartist.demo import _one_seed


def test_info_prints_table(capsys):
    assert main(["info"]) == 0
    assert "CFG weight" in capsys.readouterr().out


def test_help_lists_verbs(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "info" in out and "demo" in out


def test_demo_one_seed_ssd_step_follows_prediction_difference():
    ssd, sds = _one_seed(0)
    assert ssd > 0.999
    assert sds < ssd


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    json.loads(capsys.readouterr().out)
