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

KEYS = ("round", "dataset", "skill")
FIGURES = ("n", "noisy", "text_only", "rare", "groups")  # per side (pool, selected) of each key
SIDES = ("pool", "selected")
COLUMNS = (*KEYS, *(f"{side}_{f}" for side in SIDES for f in FIGURES))


def pool_meta(run_dir: Path) -> pd.DataFrame:
    """uid, dataset, skill, noisy, needs_image, rare, dup_group of every sample the run has seen."""
    pool = pd.read_parquet(RunLayout(run_dir).pool.samples, columns=["uid", "dataset", "record"])
    meta = [json.loads(r).get("extra", {}).get("meta", {}) for r in pool["record"]]
    df = pd.DataFrame(meta)
    df.insert(0, "uid", pool["uid"].to_numpy())
    df.insert(1, "dataset", pool["dataset"].to_numpy())
    return df


def selection_rows(run_dir: Path) -> pd.DataFrame:
    """Every round's pool as the selector saw it: the ground truth of :func:`pool_meta` per row, with
    ``round`` and ``selected`` (one row per sample and round)."""
    meta = pool_meta(run_dir).set_index("uid")
    layout = RunLayout(run_dir)
    frames = []
    for t in layout.trained_rounds():
        path = layout.round(t).selection
        if path.exists():
            sel = pd.read_parquet(path, columns=["uid", "selected"])
            rows = meta.reindex(sel["uid"]).reset_index()
            rows.insert(0, "round", t)
            rows["selected"] = sel["selected"].to_numpy()
            frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["round", "uid", "selected"])


def counts(rows: pd.DataFrame) -> pd.DataFrame:
    """:data:`COLUMNS`: per round, dataset and skill (``""`` where the stream records none), of the
    pool and of the selected rows of :func:`selection_rows`: n, wrong labels, text-only questions,
    rare-skill samples, near-duplicate groups covered; a figure whose ground-truth field the stream
    does not record is NaN (a missing flag on one sample counts as False)."""
    rows = rows.assign(skill=rows["skill"].fillna("") if "skill" in rows else "")
    flags = {"noisy": ("noisy", True), "text_only": ("needs_image", False), "rare": ("rare", True)}
    table = None
    for side in SIDES:
        part = rows if side == "pool" else rows[rows["selected"].astype(bool)]
        grouped = part.groupby(list(KEYS), sort=True, dropna=False)
        figs = {f"{side}_n": grouped.size()}
        for name, (field, value) in flags.items():
            figs[f"{side}_{name}"] = (part[field].eq(value).groupby([part[k] for k in KEYS], dropna=False).sum()
                                      if field in part else grouped.size() * float("nan"))
        figs[f"{side}_groups"] = grouped["dup_group"].nunique() if "dup_group" in part else grouped.size() * float("nan")
        frame = pd.DataFrame(figs)
        table = frame if table is None else table.join(frame, how="left")
    if table is None or table.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    sel = [c for c in table if c.startswith("selected_")]
    table[sel] = table[sel].fillna(0).where(table[[c.replace("selected_", "pool_") for c in sel]].notna().to_numpy())
    return table.reset_index()[list(COLUMNS)]


def summarise(table: pd.DataFrame, side: str) -> dict[str, float]:
    """n, % wrong labels, % text-only questions, % rare skills and near-duplicate groups per 100 of
    one side (``pool`` or ``selected``) of a :func:`counts` table, over its rows (groups counted
    within each round, dataset and skill: near-duplicates share a skill)."""
    total = float(table[f"{side}_n"].sum())
    n = max(total, 1.0)

    def per100(fig: str) -> float:  # NaN when the stream does not record the field
        return 100 * float(table[f"{side}_{fig}"].sum(min_count=1)) / n

    return {"n": int(total), "noisy %": per100("noisy"), "text-only %": per100("text_only"),
            "rare %": per100("rare"), "groups /100": per100("groups")}


def over_rounds(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """:func:`summarise` of the pool and of the selected samples, every round's pooled (a sample
    replayed in two rounds counts twice): ``{"pool": ..., "selected": ...}``."""
    return {side: summarise(table, side) for side in SIDES}


def to_json(table: pd.DataFrame) -> dict:
    """A :func:`counts` table as the digest keeps it: ``{"columns": [...], "rows": [[...], ...]}``."""
    return {"columns": list(COLUMNS), "rows": json.loads(table[list(COLUMNS)].to_json(orient="values"))}


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


def shares(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per round, each ``by`` group's share (%) of the selected and of the pool (a dataset and skill
    named ``dataset/skill``)."""
    out = []
    for t, of_round in table.groupby("round"):
        for side in SIDES:
            share = 100 * of_round.groupby(by)[f"{side}_n"].sum() / max(of_round[f"{side}_n"].sum(), 1)
            share.index = ["/".join(map(str, k)) if isinstance(k, tuple) else k for k in share.index]
            out.append({"round": t, "of": side, **share.round(1).to_dict()})
    return pd.DataFrame(out).fillna(0)


def figures(table: pd.DataFrame, run: str, by: list[str]) -> pd.DataFrame:
    """Per round (and ``"all"``: every round pooled, as the results tables count) and ``by`` group:
    :func:`summarise` of the pool and of the selected."""
    lines = []
    for t, of_round in [*table.groupby("round"), ("all", table)]:
        for key, part in of_round.groupby(by) if by else [((), of_round)]:
            key = key if isinstance(key, tuple) else (key,)
            lines += [{"run": run, "round": t, **dict(zip(by, key)), "of": side, **summarise(part, side)}
                      for side in SIDES]
    return pd.DataFrame(lines)


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
