"""docs/CONFIG.md is the config reference written from adapt/config.py: every key is in it."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from adapt.cli import app
from adapt.config import ExperimentConfig
from adapt.config_doc import config_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "CONFIG.md"


def _keys(model: type, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and hasattr(sub, "model_fields"):
            out += _keys(sub, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_committed_reference_is_the_generated_one() -> None:
    assert DOC.read_text(encoding="utf-8") == config_reference(), \
        "docs/CONFIG.md is stale: run `adapt config-reference > docs/CONFIG.md`"


def test_every_key_has_a_row_with_its_description() -> None:
    text = config_reference()
    keys = _keys(ExperimentConfig)
    assert "features.adapter" in keys and "selection.gdo.ranking" in keys
    for key in keys:
        rows = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
        assert len(rows) == 1, key
        assert not rows[0].endswith("|  |"), f"{key} has no description"


def test_row_shows_type_and_default() -> None:
    row = next(line for line in config_reference().splitlines() if line.startswith("| `pool.prune_order` |"))
    assert row.startswith("| `pool.prune_order` | `arrival` \\| `centroid` | `arrival` | ")


def test_cli_prints_the_reference() -> None:
    result = CliRunner().invoke(app, ["config-reference"])
    assert result.exit_code == 0
    assert result.stdout == config_reference()
