from pathlib import Path

import pytest

from adapt.config import ExperimentConfig, load_config
from adapt.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_demo_config_loads():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.stream.builtin == "default"
    assert cfg.selection.budget == 0.25


def test_overrides_set_nested_values_with_yaml_types(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 1\nselection:\n  method: random\n")
    cfg = load_config(p, ["selection.budget=100", "training.lr=3e-4", "stream.seed=7", "tracking.tags=[a, b]"])
    assert cfg.selection.budget == 100 and isinstance(cfg.selection.budget, int)
    assert cfg.training.lr == pytest.approx(3e-4)
    assert cfg.stream.seed == 7 and cfg.seed == 1
    assert cfg.tracking.tags == ["a", "b"]


def test_fraction_budget_stays_a_float():
    cfg = load_config(None, ["selection.budget=0.5"])
    assert cfg.selection.budget == 0.5 and isinstance(cfg.selection.budget, float)


@pytest.mark.parametrize(
    "text, words",
    [
        ("training:\n  lrr: 0.1\n", ["unknown key", "training.lrr"]),
        ("bogus: 1\n", ["unknown key", "bogus"]),
        ("training:\n  lr: fast\n", ["training.lr", "number"]),
        ("selection:\n  budget: 1.5\n", ["selection.budget", "(0, 1]"]),
        ("selection:\n  budget: 0\n", ["selection.budget", ">= 1"]),
        ("- a\n- b\n", ["mapping"]),
        ("seed: [1\n", ["not valid YAML"]),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, words):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert str(p) in msg
    for w in words:
        assert w in msg


def test_bad_override_names_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(p, ["model.nme=x"])
    assert "model.nme" in str(info.value) and str(p) in str(info.value)
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(p, ["justakey"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
