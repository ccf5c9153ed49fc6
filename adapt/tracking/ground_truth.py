"""What a run selected, against the ground truth its stream records (the built-in streams do):
for every training sample, whether its label is wrong (``noisy``), whether its question needs the
image, whether it is a rare skill, its skill and its near-duplicate group (``meta`` in the LLaVA
records). :func:`counts` is the table everything else reads: per round, dataset and skill, how many
samples the pool and the selection hold and how many of them are mislabelled, text-only, rare, and
how many near-duplicate groups they cover. :func:`round_diagnostics` is the per-round view
``adapt report`` shows (and, for ``hindsight``, which of its parts picked what).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from adapt.io import read_json, read_parquet
from adapt.layout import BEFORE_TRAINING, RunLayout

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


def round_diagnostics(run_dir: Path) -> pd.DataFrame | None:
    """Per round, for a stream that records wrong labels (None otherwise): samples selected, % wrong
    labels of the selected and of the pool, near-duplicate groups per 100 selected, each dataset's
    share (%) of the selection, and, where the round has ``hindsight``'s samples.parquet, the
    samples flagged so far, the % of them with wrong labels, and the % of the pool's wrong labels
    they catch."""
    rows = selection_rows(run_dir)
    if rows.empty or "noisy" not in rows:
        return None
    table = counts(rows)
    noisy = rows.assign(noisy=rows["noisy"].eq(True)).drop_duplicates("uid").set_index("uid")["noisy"]
    out = []
    for t, g in table.groupby("round"):
        sel, pool = summarise(g, "selected"), summarise(g, "pool")
        rec: dict[str, object] = {"round": int(t), "selected": sel["n"], "wrong labels, % of selected": sel["noisy %"],
                                  "% of pool": pool["noisy %"], "groups per 100 selected": sel["groups /100"]}
        by_ds = g.groupby("dataset")["selected_n"].sum()
        rec |= {f"% {d}": 100 * float(v) / max(sel["n"], 1) for d, v in by_ds.items()}
        flags = RunLayout(run_dir).round(int(t)).method("hindsight").samples
        if flags.is_file():
            f = read_parquet(flags, columns=["uid", "flagged"])
            flagged = f.loc[f["flagged"], "uid"]
            wrong = noisy.reindex(f["uid"]).fillna(False).to_numpy(bool)
            rec |= {"flagged": int(len(flagged)),
                    "flagged, % wrong labels": 100 * float(noisy.reindex(flagged).fillna(False).mean())
                    if len(flagged) else float("nan"),
                    "pool's wrong labels flagged, %": 100 * float(f["flagged"].to_numpy()[wrong].mean())
                    if wrong.any() else float("nan")}
        out.append(rec)
    frame = pd.DataFrame(out)
    shares = [c for c in frame if c.startswith("% ") and c != "% of pool"]
    return frame[[c for c in frame if c not in shares] + shares]


def task_budget_table(run_dir: Path) -> pd.DataFrame | None:
    """Per round and task, what ``hindsight`` decided (its selector.json): pool, flagged, mean loss,
    the need, the budget's floor part and need part, the quota, fine clusters and how many the
    selection covers; beside the need, ``eval_error``: 100 · (1 − the task's eval score) of the model
    the need was measured with (the one after round t−1, the base model for round 0), so a reader
    sees how well the need tracks what the model gets wrong. A bounded need (``error``,
    ``answer_error``) is shown in % like it; a learning rate (``split: gain``) per 1000 samples
    (the probe's own figures stay in selector.json). None for a run of another method."""
    import yaml

    layout = RunLayout(run_dir)
    config = yaml.safe_load(layout.config.read_text()) if layout.config.is_file() else {}
    measure = (((config or {}).get("selection") or {}).get("hindsight") or {}).get("budget", {}).get("need", "loss")
    out = []
    for t in layout.trained_rounds():
        path = layout.round(t).selector
        if not path.is_file():
            continue
        info = read_json(path)
        if info.get("method") != "hindsight":
            return None
        before = layout.round(t - 1 if t > 0 else BEFORE_TRAINING).eval
        scores = read_json(before).get("scores", {}) if before.is_file() else {}
        for task, v in info["tasks"].items():
            row = {"round": t, "task": task, **{k: x for k, x in v.items() if k != "probe"}}
            if row.get("rate") is not None:
                row["rate"] = 1000.0 * row["rate"]
            if measure != "loss" and "need" in row:
                row["need"] = 100.0 * row["need"]
            row["eval_error"] = 100.0 * (1.0 - scores[task]) if task in scores else float("nan")
            out.append(row)
    if not out:
        return None
    frame = pd.DataFrame(out)
    if "need" in frame:  # the need beside the error it estimates
        frame.insert(frame.columns.get_loc("need") + 1, "eval_error", frame.pop("eval_error"))
    return frame.rename(columns={"need": f"need ({'%' if measure != 'loss' else 'loss'})",
                                 "rate": "rate (per 1000 samples)"})
