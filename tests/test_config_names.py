"""Every registry-backed name in a config (method, projector, sampler, budget split, experts, expert
choice, each dataset's metric, the built-in model and stream) is checked when a run is created, before
any data is read: a typo exits 2 with one line naming the key, the file and the known names, and the
run directory is not created. A resumed run is checked the same way, stream.json's metrics included."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from adapt.cli import app
from adapt.config import load_config
from adapt.errors import UnknownNameError
from adapt.evaluation.answer_scorers import ANSWER_SCORERS
from adapt.features.projectors import PROJECTORS
from adapt.methods import SCORERS, SELECTORS
from adapt.run import ContinualRun
from adapt.selection.budget import BUDGET_SPLITS
from adapt.selection.expert_choice import EXPERT_CHOICES
from adapt.selection.samplers import SAMPLERS

runner = CliRunner()

# (override with a typo, the key the message names, the registry whose names it lists)
TYPOS = [
    ("selection.method=adapt_infty", "selection.method", SELECTORS),
    ("features.projector=sjl", "features.projector", PROJECTORS),
    ("selection.adapt_inf.sampler=cc", "selection.adapt_inf.sampler", SAMPLERS),
    ("selection.adapt_inf.budget_split=uniformly", "selection.adapt_inf.budget_split", BUDGET_SPLITS),
    ("selection.adapt_inf.experts=[ppl,el2m]", "selection.adapt_inf.experts[1]", SCORERS),
    ("selection.adapt_inf.expert_choice=entropyy", "selection.adapt_inf.expert_choice", EXPERT_CHOICES),
    ("stream.datasets=[{name: d, train: missing.json, metric: exactt}]", "stream.datasets[0].metric", ANSWER_SCORERS),
    ("stream.builtin=defualt", "stream.builtin", None),
    ("model.name_or_path=builtin:tiny-lava", "model.name_or_path", None),
]


@pytest.mark.parametrize("override,key,registry", TYPOS, ids=[t[1] for t in TYPOS])
def test_a_typo_exits_2_naming_the_key_and_the_known_names(tmp_path, override, key, registry):
    run_dir = tmp_path / "run"
    res = runner.invoke(app, ["run", "configs/demo.yaml", "--run-dir", str(run_dir), override])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: configs/demo.yaml (with overrides): key '" + key + "': unknown ")
    known = re.search(r"; known: (.*)$", lines[0]).group(1).split(", ")
    if registry is not None:
        assert known == registry.names()
    assert not run_dir.exists()  # nothing created, nothing read


def test_a_typo_in_the_config_file_names_the_file(tmp_path):
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("selection:\n  method: adapt_inf\n  adapt_inf:\n    sampler: cc\n")
    res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert f"{cfg}: key 'selection.adapt_inf.sampler': unknown sampler 'cc'; known: bottom, ccs, random, top" \
        in res.output
    assert not (tmp_path / "run").exists()


def test_resume_checks_the_stored_config_and_the_stream(tmp_path):
    """A run whose stream.json (edited, or written by an older version) names an unknown metric is
    refused at resume, before anything runs."""
    cfg = load_config(None, ["stream.scale=0.005", "tracking.wandb=false"])
    ContinualRun.create(tmp_path / "run", cfg, progress=False)
    stream = tmp_path / "run" / "stream.json"
    data = json.loads(stream.read_text())
    data["datasets"][1]["metric"] = "exct"
    stream.write_text(json.dumps(data))
    with pytest.raises(UnknownNameError, match=re.escape(f"{stream}: key 'datasets[1].metric': unknown answer "
                                                         "scorer 'exct'; known: exact, iou, numeric")):
        ContinualRun.resume(tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "pool").exists()


def test_a_legacy_flat_adapt_inf_key_still_loads():
    with pytest.warns(DeprecationWarning, match="selection.k: now under selection.adapt_inf"):
        cfg = load_config(None, ["selection.k=3"])
    assert cfg.selection.adapt_inf.k == 3
