"""What each run selected on the built-in stream, from the demo data's ground truth.

The built-in stream records, for every training sample, whether its label is wrong (``noisy``),
whether its question needs the image, whether it is a rare skill, its skill and its
near-duplicate group (``meta`` in the LLaVA records). A run's ground truth comes down to
:func:`counts`: per round, dataset and skill, how many samples the pool and the selection hold and
how many of them are mislabelled, text-only, rare, and how many near-duplicate groups they cover.
``compare.py`` keeps that table in each run's digest, so this reads a run directory or a digest
(``experiments/results/runs/<stream>/<run>.json``: a fresh clone has those). For each run and
round, and every round pooled (``all``, as the results tables count), it prints for the selected
samples against the whole pool: % wrong labels, % text-only questions, % rare skills, and
near-duplicate groups per 100 (higher: more diverse), per run or (``--by``) per dataset or skill;
then each dataset's (``--by skill``: each skill's) share of the budget.

    python experiments/analyse_selection.py runs/adapt_inf runs/random [--round 5]
    python experiments/analyse_selection.py experiments/results/runs/default/gdo-s0.json --by skill
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from adapt.layout import RunLayout
from adapt.tracking.ground_truth import (COLUMNS, FIGURES, KEYS, SIDES, counts, figures, over_rounds,  # noqa: F401
                                         pool_meta, selection_rows, shares, summarise, to_json)


def load_counts(path: Path) -> pd.DataFrame:
    """The :func:`counts` table of a run directory, or the one a digest (``<run>.json``) keeps."""
    if path.is_dir():
        if not RunLayout(path).pool.samples.is_file():
            raise SystemExit(f"{path}: not a run directory with a pool (no {RunLayout(path).pool.samples.name})")
        return counts(selection_rows(path))
    try:
        kept = json.loads(path.read_text()).get("truth_counts")
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: neither a run directory nor a readable digest ({exc})") from None
    if kept is None:
        raise SystemExit(f"{path}: this digest keeps no ground-truth counts (made before they were kept, "
                         f"or a run without a selection); give the run directory")
    return pd.DataFrame(kept["rows"], columns=kept["columns"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories or their digests (<run>.json)")
    ap.add_argument("--round", type=int, action="append", help="rounds to show (default: all)")
    ap.add_argument("--by", choices=("run", "dataset", "skill"), default="run",
                    help="the figures per run (default), per dataset or per skill; the budget's share per "
                         "dataset, or per skill with --by skill")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", None)
    by = {"run": [], "dataset": ["dataset"], "skill": ["dataset", "skill"]}[args.by]
    lines, split = [], []
    for run in args.runs:
        table = load_counts(run)
        name = run.stem if run.suffix == ".json" else run.name
        table = table[table["round"].isin(args.round)] if args.round else table
        lines.append(figures(table, name, by))
        split.append(shares(table, by or ["dataset"]).assign(run=name))
    print(pd.concat(lines, ignore_index=True).round(1).to_string(index=False))
    print()
    print(f"share of each {'skill' if args.by == 'skill' else 'dataset'} (%)")
    both = pd.concat(split, ignore_index=True).fillna(0)
    print(both[["run", "round", "of", *[c for c in both if c not in ("run", "round", "of")]]].to_string(index=False))


if __name__ == "__main__":
    main()
