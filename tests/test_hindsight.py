"""``hindsight`` (our selector, adapt/methods/hindsight.py) on constructed data, against hand
computations: the robust z and the noise flags, the budget by need, the stratified draw, and one
round's selection and pruning from constructed feature stores and a previous round's selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from adapt.config import ExperimentConfig
from adapt.features.store import SCORE_COLUMNS, FeatureStore
from adapt.layout import RoundLayout
from adapt.methods.hindsight import (MAD_SCALE, Hindsight, noise_flags, robust_z, stratified_draw, task_budgets,
                                     task_need, times_trained)
from adapt.selection.base import PruneContext, SelectionContext


def test_robust_z_by_hand():
    # median 3, |x - 3| = [2, 1, 0, 1, 97] -> MAD 1
    z = robust_z(np.array([1.0, 2, 3, 4, 100]))
    assert z.tolist() == pytest.approx([-2 / MAD_SCALE, -1 / MAD_SCALE, 0.0, 1 / MAD_SCALE, 97 / MAD_SCALE])
    assert robust_z(np.array([5.0, 5.0, 5.0, 9.0])).tolist() == [0.0, 0.0, 0.0, 0.0]  # MAD 0: nothing stands out


def test_noise_flags_only_trained_rows_of_a_task_with_enough_of_them():
    # task a: 20 trained rows with losses e^{0..19 step 0.1} (log-loss 0, 0.1, ..., 1.9: median 0.95, MAD 0.5)
    # and one more trained row at loss e^{3.2}: z = (3.2 - 1.0) / (1.4826 * 0.5) = 2.97 -> not flagged at 3,
    # flagged at 2.9; an untrained row of loss e^9 is never flagged; task b has too few trained rows
    log_a = np.r_[np.arange(20) * 0.1, 3.2]
    loss = np.exp(np.r_[log_a, 9.0, 5.0, 0.0, 0.0])
    tasks = np.array(["a"] * 22 + ["b"] * 3, dtype=object)
    trained = np.r_[np.ones(21, bool), False, True, True, True]
    med = np.median(log_a)
    mad = MAD_SCALE * np.median(np.abs(log_a - med))
    flag, z = noise_flags(tasks, loss, trained, threshold=3.0, min_trained=20)
    assert z[20] == pytest.approx((3.2 - med) / mad)
    assert not flag.any() and (z[20] < 3.0)
    flag, z = noise_flags(tasks, loss, trained, threshold=2.9, min_trained=20)
    assert np.flatnonzero(flag).tolist() == [20]
    assert np.isnan(z[21]) and np.isnan(z[22:]).all()  # untrained, and task b (3 trained < 20)


def test_task_budgets_by_hand():
    # p = (1/2, 1/2), L = (1, 3): need shares (1/4, 3/4); weights 0.5*p + 0.5*need = (0.375, 0.625) of 40
    tb = task_budgets({"a": 100, "b": 100}, {"a": 1.0, "b": 3.0}, 40, floor=0.5)
    assert tb.quota == {"a": 15, "b": 25}
    assert tb.floor == pytest.approx({"a": 10.0, "b": 10.0}) and tb.need == pytest.approx({"a": 5.0, "b": 15.0})
    assert task_budgets({"a": 100, "b": 100}, {"a": 1.0, "b": 3.0}, 40, floor=1.0).quota == {"a": 20, "b": 20}
    # all need on b, which holds 10: capped, the other 30 go to a (no weight left: spread over what is open)
    assert task_budgets({"a": 100, "b": 10}, {"a": 0.0, "b": 5.0}, 40, floor=0.0).quota == {"a": 30, "b": 10}


def test_stratified_draw_splits_in_proportion_to_cluster_sizes():
    labels = np.array([0] * 6 + [1] * 3 + [2])
    # 5 of 10: shares 3, 1.5, 0.5 -> 3, 1, 0 and the one left to the first largest remainder (cluster 1)
    picked = stratified_draw(labels, 5, np.random.default_rng(0))
    assert len(set(picked.tolist())) == 5
    assert np.bincount(labels[picked], minlength=3).tolist() == [3, 2, 0]


def test_stratified_draw_takes_the_lowest_priority_first_inside_each_cluster():
    labels = np.array([0] * 6 + [1] * 4)
    seen = np.array([2, 0, 1, 0, 3, 1, 1, 0, 0, 2])
    picked = stratified_draw(labels, 5, np.random.default_rng(0), priority=seen)
    # shares 3 and 2: cluster 0 takes its rows of priority 0, 0, then one of the two 1s; cluster 1 its two 0s
    assert sorted(picked[labels[picked] == 1].tolist()) == [7, 8]
    c0 = sorted(picked[labels[picked] == 0].tolist())
    assert c0[:2] == [1, 3] and c0[2] in (2, 5)


# ----------------------------------------------------------------------------------------------- one round
DIM = 4


def _store(root, uids, rows, loss=None):
    cols = SCORE_COLUMNS if loss is not None else ("tokens",)
    st = FeatureStore.create(root, uids, DIM, columns=cols)
    scores = np.zeros((len(uids), len(cols)), np.float32)
    if loss is not None:
        scores[:, cols.index("loss")] = loss
        scores[:, cols.index("answer_tokens")] = 1 + np.arange(len(uids)) % 3  # answers of 1, 2, 3 tokens
    st.write_rows(np.arange(len(uids)), rows, scores)
    return st


@pytest.fixture()
def round1(tmp_path):
    """Round 1 of a run: task a (40 samples, 20 of them trained in round 0, one of those with a loss
    far above the others) and a new task b (20 samples, loss 4); hidden states in two tight groups
    per task."""
    rng = np.random.default_rng(0)
    uids = [f"a/{i}" for i in range(40)] + [f"b/{i}" for i in range(20)]
    tasks = ["a"] * 40 + ["b"] * 20
    loss = np.r_[np.exp(rng.normal(-3, 0.3, 40)), np.full(20, 4.0)]
    loss[7] = 2.0  # trained last round and still high: a wrong label
    centres = np.eye(DIM)
    group = np.r_[np.arange(40) % 2, 2 + np.arange(20) % 2]
    hidden = centres[group] + 0.01 * rng.normal(size=(60, DIM))
    r0, r1 = RoundLayout(tmp_path / "rounds" / "0"), RoundLayout(tmp_path / "rounds" / "1")
    r0.dir.mkdir(parents=True)
    pd.DataFrame({"uid": uids[:40], "selected": np.arange(40) < 20}).to_parquet(r0.selection)
    _store(r1.features, uids, rng.normal(size=(60, DIM)), loss)
    _store(r1.hidden, uids, hidden)
    pool = pd.DataFrame({"uid": uids, "dataset": tasks, "task": tasks, "round_added": [0] * 40 + [1] * 20})
    return pool, r1, loss, group


def _select(pool, files, n_select=24, **sets):
    cfg = ExperimentConfig()
    cfg = cfg.model_copy(update={"selection": cfg.selection.model_copy(update={"method": "hindsight"})})
    hs = cfg.selection.hindsight
    for part, on in sets.items():
        setattr(hs, part, getattr(hs, part).model_copy(update={"enabled": on}))
    sel = Hindsight(cfg)
    ctx = SelectionContext(round=1, pool=pool, new_uids=pool.loc[pool["task"] == "b", "uid"].tolist(), budget=n_select,
                           seed=0, config=cfg, files=files)
    return sel, sel.select(ctx)


def _select_budget(pool, files, **budget):
    """Round 1's selection of 24 with ``selection.hindsight.budget`` set to ``budget``."""
    cfg = ExperimentConfig.model_validate({"selection": {"method": "hindsight", "hindsight": {"budget": budget}}})
    ctx = SelectionContext(round=1, pool=pool, new_uids=pool.loc[pool["task"] == "b", "uid"].tolist(), budget=24,
                           seed=0, config=cfg, files=files)
    return Hindsight(cfg).select(ctx)


def test_one_round_flags_the_wrong_label_and_splits_the_budget_by_need(round1):
    pool, files, loss, group = round1
    sel, out = _select(pool, files)
    table = out.table.set_index("uid")
    assert not table.loc["a/7", "selected"] and table.loc["a/7", "expert"] == "flagged"
    detail = pd.read_parquet(files.dir / "hindsight" / "samples.parquet").set_index("uid")
    assert detail["flagged"].sum() == 1 and detail.loc["a/7", "new_flag"]
    # the budget by need (the defaults: the whole answer's error, every task weighted once, the floor by pool
    # share) over the 39 unflagged a-samples and the 20 b-samples, as task_budgets computes it: floor
    # 12 · (39, 20) / 59 = (7.93, 4.07), need 12 · (0.092, 0.994) / 1.086 = (1.02, 10.98) -> (9, 15)
    expected = task_budgets({"a": 39, "b": 20}, _answer_error_need(loss), 24, 0.5, weight="task",
                            floor_weight="pool").quota
    counts = out.table.loc[out.table["selected"], "task"].value_counts().to_dict()
    assert counts == expected and sum(counts.values()) == 24
    assert out.summary["tasks"]["a"]["flagged"] == 1 and out.summary["tasks"]["b"]["quota"] == expected["b"]
    # coverage: a's 9 drawn over its two hidden-state groups in proportion (k = 9 fine clusters of 39);
    # b's 15 of 20 (15 fine clusters, proportional to their sizes, not to the groups) reach both groups
    chosen = group[out.table["selected"].to_numpy()]
    assert expected == {"a": 9, "b": 15} and all(abs(int((chosen == g).sum()) - 4.5) <= 1 for g in (0, 1))
    assert (chosen == 2).sum() > 0 and (chosen == 3).sum() > 0
    # selector.json's entry of task a: 40 in the pool, a/7 flagged this round, 20 trained in round 0; the
    # mean loss and the need over the 39 unflagged; unseen first: all 9 picks never trained
    a_rows = np.r_[np.arange(7), np.arange(8, 40)]
    split = task_budgets({"a": 39, "b": 20}, _answer_error_need(loss), 24, 0.5, weight="task", floor_weight="pool")
    a_detail = detail.loc[[f"a/{i}" for i in range(40)]]
    assert out.summary["tasks"]["a"] == {
        "pool": 40, "flagged": 1, "new_flags": 1, "trained_last_round": 20,
        "mean_loss": round(float(loss.astype(np.float32).astype(np.float64)[a_rows].mean()), 6), "need": round(_answer_error_need(loss)["a"], 6),
        "floor_share": round(split.floor["a"], 3), "need_share": round(split.need["a"], 3), "quota": 9,
        "selected": 9, "never_trained_selected": 9,
        "fine_clusters": a_detail.loc[~a_detail["flagged"], "fine_cluster"].nunique(),
        "clusters_covered": a_detail.loc[a_detail["selected"], "fine_cluster"].nunique()}
    assert out.summary["tasks"]["a"]["fine_clusters"] == 9


def test_task_budgets_with_a_task_at_its_pool_share_by_hand():
    # p = (0.25, 0.25, 0.5); c at its share: 0.5 of 40 = 20; the rest 20 over a, b (shares 1/2, 1/2 among them),
    # L = (1, 3): floor 0.5 * 20 * (1/2, 1/2) = (5, 5), need 0.5 * 20 * (1/4, 3/4) = (2.5, 7.5)
    tb = task_budgets({"a": 50, "b": 50, "c": 100}, {"a": 1.0, "b": 3.0, "c": 99.0}, 40, floor=0.5, at_share={"c"})
    assert tb.floor == pytest.approx({"a": 5.0, "b": 5.0, "c": 20.0})
    assert tb.need == pytest.approx({"a": 2.5, "b": 7.5, "c": 0.0})
    assert tb.quota == {"a": 8, "b": 12, "c": 20}  # 7.5 / 12.5: the tie broken as split_weighted breaks it
    # every task at its share: in proportion to the pool
    assert task_budgets({"a": 50, "b": 150}, {"a": 1.0, "b": 3.0}, 40, 0.5, at_share={"a", "b"}).quota == {
        "a": 10, "b": 30}


def test_task_budgets_with_every_task_weighted_once_by_hand():
    # weight="task": p = (1/2, 1/2) whatever the sizes; L = (1, 3): floor (10, 10), need (5, 15)
    tb = task_budgets({"a": 300, "b": 100}, {"a": 1.0, "b": 3.0}, 40, floor=0.5, weight="task")
    assert tb.floor == pytest.approx({"a": 10.0, "b": 10.0}) and tb.need == pytest.approx({"a": 5.0, "b": 15.0})
    assert tb.quota == {"a": 15, "b": 25}
    # the same under weight="pool": p = (3/4, 1/4), need p·L = (3/4, 3/4) -> (1/2, 1/2): (15 + 10, 5 + 10)
    assert task_budgets({"a": 300, "b": 100}, {"a": 1.0, "b": 3.0}, 40, floor=0.5).quota == {"a": 25, "b": 15}
    # a task with no samples has no weight; a capped one (b holds 10) gives its excess to the other
    assert task_budgets({"a": 300, "b": 10, "c": 0}, {"a": 1.0, "b": 1.0, "c": 1.0}, 40, 1.0,
                        weight="task").quota == {"a": 30, "b": 10, "c": 0}
    # c at its share, now 1/3 of 40; a and b split the other 2/3: floor (20/6, 20/6), need (20/12, 20/4)
    tb = task_budgets({"a": 50, "b": 50, "c": 100}, {"a": 1.0, "b": 3.0, "c": 99.0}, 40, 0.5, at_share={"c"},
                      weight="task")
    assert tb.floor == pytest.approx({"a": 20 / 3, "b": 20 / 3, "c": 40 / 3})
    assert tb.need == pytest.approx({"a": 10 / 3, "b": 10.0, "c": 0.0})
    assert tb.quota == {"a": 10, "b": 17, "c": 13}
    with pytest.raises(ValueError, match="weight"):
        task_budgets({"a": 1}, {"a": 1.0}, 1, 0.5, weight="size")


def test_every_task_weighted_once_in_the_selection(round1):
    pool, files, loss, group = round1
    out = _select_budget(pool, files, weight="task", floor_weight="task", need="loss")
    need = {"a": float(np.mean(np.delete(loss[:40], 7))), "b": 4.0}
    expected = task_budgets({"a": 39, "b": 20}, need, 24, 0.5, weight="task").quota
    assert expected != task_budgets({"a": 39, "b": 20}, need, 24, 0.5).quota
    assert out.table.loc[out.table["selected"], "task"].value_counts().to_dict() == expected


def test_task_need_by_hand():
    loss = np.array([0.0, math.log(2), math.log(4)])  # exp(-loss) = 1, 1/2, 1/4
    assert task_need(loss, "loss") == pytest.approx(math.log(8) / 3)
    assert task_need(loss, "error") == pytest.approx((0 + 0.5 + 0.75) / 3)
    assert task_need(np.zeros(0), "error") == 0.0
    # answers of 1, 2 and 3 tokens: 1 - exp(-loss * n) = 0, 1 - 1/4, 1 - 1/64
    assert task_need(loss, "answer_error", np.array([1, 2, 3])) == pytest.approx((0 + 0.75 + 63 / 64) / 3)
    with pytest.raises(ValueError, match="answer_tokens"):
        task_need(loss, "answer_error")


def test_need_as_the_error_rate_gives_old_tasks_more_than_the_loss_does(round1):
    pool, files, loss, group = round1
    out = _select_budget(pool, files, need="error", weight="pool")
    kept_a = np.delete(loss[:40], 7)  # a/7 flagged, as with the loss
    need = {"a": float(np.mean(1 - np.exp(-kept_a))), "b": 1 - math.exp(-4.0)}
    expected = task_budgets({"a": 39, "b": 20}, need, 24, 0.5).quota
    assert out.table.loc[out.table["selected"], "task"].value_counts().to_dict() == expected
    assert out.summary["tasks"]["a"]["need"] == pytest.approx(need["a"], abs=1e-6)
    by_loss = task_budgets({"a": 39, "b": 20}, {"a": float(kept_a.mean()), "b": 4.0}, 24, 0.5).quota
    assert expected["a"] > by_loss["a"]


def _answer_error_need(loss: np.ndarray) -> dict[str, float]:
    """round1's need by the whole answer's error: answers of 1, 2, 3 tokens, a/7 flagged."""
    n = (1 + np.arange(60) % 3).astype(np.float64)
    keep_a = np.delete(np.arange(40), 7)
    loss32 = loss.astype(np.float32).astype(np.float64)  # the store keeps float32 scores
    return {"a": float(np.mean(1 - np.exp(-loss32[keep_a] * n[keep_a]))),
            "b": float(np.mean(1 - np.exp(-loss32[40:] * n[40:])))}


def test_need_as_the_whole_answer_s_error_rate(round1):
    pool, files, loss, group = round1
    out = _select_budget(pool, files, need="answer_error", weight="pool")
    need = _answer_error_need(loss)
    assert out.summary["tasks"]["a"]["need"] == pytest.approx(need["a"], abs=1e-6)
    assert out.summary["tasks"]["b"]["need"] == pytest.approx(need["b"], abs=1e-6)
    expected = task_budgets({"a": 39, "b": 20}, need, 24, 0.5).quota
    assert out.table.loc[out.table["selected"], "task"].value_counts().to_dict() == expected


def test_new_tasks_at_share_gives_the_untrained_task_its_pool_share(round1):
    pool, files, loss, group = round1  # task b (20 of 59 unflagged samples) was never trained
    out = _select_budget(pool, files, new_tasks="share", need="loss", weight="pool")
    expected = task_budgets({"a": 39, "b": 20}, {"a": float(np.mean(np.delete(loss[:40], 7))), "b": 4.0}, 24, 0.5,
                            at_share={"b"}).quota
    assert expected == {"a": 16, "b": 8}  # b: 24 * 20/59 = 8.1; a, the only trained task, takes the rest
    assert out.table.loc[out.table["selected"], "task"].value_counts().to_dict() == expected
    assert out.summary["tasks"]["b"]["need_share"] == 0.0


def test_unseen_first_takes_the_samples_never_trained(round1):
    pool, files, loss, group = round1
    assert times_trained(files, 1, pool["uid"].tolist()).tolist() == [1] * 20 + [0] * 40
    _, out = _select(pool, files, coverage=False)
    picked_a = out.table.loc[out.table["selected"] & (out.table["task"] == "a"), "uid"]
    assert len(picked_a) > 0 and all(int(u.split("/")[1]) >= 20 for u in picked_a)  # round 0 trained a/0..a/19
    detail = pd.read_parquet(files.dir / "hindsight" / "samples.parquet")
    assert detail["times_trained"].tolist() == [1] * 20 + [0] * 40


def test_parts_off_give_randoms_expected_split(round1):
    pool, files, loss, group = round1
    _, out = _select(pool, files, noise=False, budget=False, coverage=False, unseen=False)
    counts = out.table.loc[out.table["selected"], "task"].value_counts().to_dict()
    assert counts == {"a": 16, "b": 8}  # 24 in proportion to 40 : 20
    assert (out.table["cluster"] == -1).all() and (out.table["expert"] == "").all()


def test_prune_drops_the_flagged_first_and_keeps_every_fine_cluster(round1):
    pool, files, loss, group = round1
    sel, out = _select(pool, files)
    pd.DataFrame(out.table).to_parquet(files.selection)
    active = pool[["uid"]]
    ctx = PruneContext(1, active, limit=59, seed=0, files=files, embedding=files.features)
    assert sel.prune(ctx).uids == ["a/7"]  # one to drop: the flagged
    ctx = PruneContext(1, active, limit=30, seed=0, files=files, embedding=files.features)
    pruned = sel.prune(ctx)
    kept = np.setdiff1d(np.arange(60), [pool["uid"].tolist().index(u) for u in pruned.uids])
    assert "a/7" in pruned.uids and len(kept) == 30
    # each task keeps its share of the unflagged 59 (30 * 39/59 = 19.8 -> 20, 10.2 -> 10); every group keeps some
    assert (pool["task"].to_numpy()[kept] == "a").sum() == 20
    assert set(group[kept].tolist()) == {0, 1, 2, 3}
    assert "flagged" in pruned.reason


def test_summary_is_json(round1):
    pool, files, loss, group = round1
    _, out = _select(pool, files)
    assert json.loads(json.dumps(out.summary))["parts"] == {"noise": True, "budget": True, "coverage": True,
                                                           "unseen": True, "prune": True}
    assert math.isclose(sum(t["floor_share"] for t in out.summary["tasks"].values()), 12.0, abs_tol=1e-2)


@pytest.mark.parametrize("measure", ["answer_error", "loss"])
def test_budget_table_puts_each_need_beside_the_eval_error_of_the_same_model(tmp_path, measure):
    """``adapt report``'s budget table: round t's need sits beside 1 − the eval score of the model it
    was measured with (after round t−1; the base model for round 0), both in % for a bounded need."""
    from adapt.tracking.ground_truth import task_budget_table

    run = tmp_path / "run"
    (run / "config.yaml").parent.mkdir(parents=True)
    (run / "config.yaml").write_text(f"selection:\n  hindsight:\n    budget:\n      need: {measure}\n")
    evals = {"base": {"a": 0.0}, "0": {"a": 0.75}, "1": {"a": 0.5, "b": 0.9}}
    needs = {"0": {"a": 0.98}, "1": {"a": 0.3, "b": 0.99}}
    for name, scores in evals.items():
        (run / "rounds" / name).mkdir(parents=True)
        (run / "rounds" / name / "eval.json").write_text(json.dumps({"scores": scores}))
    for name, tasks in needs.items():
        (run / "rounds" / name / "selector.json").write_text(json.dumps(
            {"method": "hindsight", "tasks": {t: {"pool": 10, "need": v, "quota": 3} for t, v in tasks.items()}}))
    table = task_budget_table(run)
    column = "need (%)" if measure == "answer_error" else "need (loss)"
    assert table.columns.tolist() == ["round", "task", "pool", column, "eval_error", "quota"]
    scale = 100.0 if measure == "answer_error" else 1.0
    # round 0: the base model (a: 0% right); round 1: the model after round 0 (a: 75%; b not evaluated yet)
    assert table[column].tolist() == pytest.approx([98.0 * scale / 100, 30.0 * scale / 100, 99.0 * scale / 100])
    assert table["eval_error"].tolist()[:2] == pytest.approx([100.0, 25.0])
    assert math.isnan(table["eval_error"].iloc[2])


def test_task_budgets_with_the_floor_in_proportion_to_the_pool_by_hand():
    # weight="task", floor_weight="pool": floor 20 · (3/4, 1/4) = (15, 5), need 20 · (1/4, 3/4) = (5, 15)
    tb = task_budgets({"a": 300, "b": 100}, {"a": 1.0, "b": 3.0}, 40, floor=0.5, weight="task", floor_weight="pool")
    assert tb.floor == pytest.approx({"a": 15.0, "b": 5.0}) and tb.need == pytest.approx({"a": 5.0, "b": 15.0})
    assert tb.quota == {"a": 20, "b": 20}
    # c at its share (1/3 of 40 under task weights); the floor's 40/3 over a, b by their pool (1/4, 3/4) = (10/3, 10),
    # the need's 40/3 by L·p = (1/2, 3/2) -> (10/3, 10): a 6.67, b 20, c 13.33 -> largest remainder (7, 20, 13)
    tb = task_budgets({"a": 50, "b": 150, "c": 200}, {"a": 1.0, "b": 3.0, "c": 99.0}, 40, 0.5, at_share={"c"},
                      weight="task", floor_weight="pool")
    assert tb.floor == pytest.approx({"a": 10 / 3, "b": 10.0, "c": 40 / 3})
    assert tb.need == pytest.approx({"a": 10 / 3, "b": 10.0, "c": 0.0})
    assert tb.quota == {"a": 7, "b": 20, "c": 13}
    # unset: the floor takes the need's weights (the frozen default's behaviour)
    assert task_budgets({"a": 300, "b": 100}, {"a": 1.0, "b": 3.0}, 40, 0.5, weight="task", floor_weight=None).quota \
        == task_budgets({"a": 300, "b": 100}, {"a": 1.0, "b": 3.0}, 40, 0.5, weight="task").quota == {"a": 15, "b": 25}


def test_floor_weight_reaches_the_selection(round1):
    pool, files, loss, _ = round1
    out = _select_budget(pool, files, floor_weight="pool")
    expected = task_budgets({"a": 39, "b": 20}, _answer_error_need(loss), 24, 0.5, weight="task",
                            floor_weight="pool").quota
    assert out.table.loc[out.table["selected"], "task"].value_counts().to_dict() == expected
    assert expected != task_budgets({"a": 39, "b": 20}, _answer_error_need(loss), 24, 0.5, weight="task").quota


def test_gain_split_by_hand():
    """Σ y = 300 with ln λ = (100 ln .005 + 500 ln .0005 − 300) / 600: y = (241.88, 58.12)."""
    from adapt.methods.hindsight import gain_split

    y = gain_split(np.array([0.5, 0.5]), np.array([1.0, 0.5]), np.array([0.01, 0.002]), np.zeros(2),
                   np.array([1e6, 1e6]), 300.0)
    log_lam = (100 * math.log(0.005) + 500 * math.log(0.0005) - 300) / 600
    assert y == pytest.approx([100 * (math.log(0.005) - log_lam), 500 * (math.log(0.0005) - log_lam)], abs=1e-6)
    assert y == pytest.approx([241.88, 58.12], abs=5e-3)


def test_gain_split_respects_the_floor_the_room_and_a_task_that_does_not_learn():
    from adapt.methods.hindsight import gain_split

    w, L = np.full(3, 1 / 3), np.array([1.0, 1.0, 1.0])
    # task 2 learns nothing (r = 0): none of the need; task 0 has room for 50 only; 200 to give
    y = gain_split(w, L, np.array([0.01, 0.01, 0.0]), np.array([10.0, 10.0, 10.0]), np.array([60, 1000, 1000]), 200.0)
    assert y == pytest.approx([50.0, 150.0, 0.0], abs=1e-6)
    # the floor's samples already spent: equal rates and needs, the task with the larger floor gets less,
    # the two ending level: f + y equal (10 + 100 = 60 + 50)
    y = gain_split(w[:2], L[:2], np.array([0.01, 0.01]), np.array([10.0, 60.0]), np.array([1e6, 1e6]), 150.0)
    assert y == pytest.approx([100.0, 50.0], abs=1e-6)
    # more to give than room: every task filled
    y = gain_split(w[:2], L[:2], np.array([0.01, 0.02]), np.zeros(2), np.array([30, 40]), 500.0)
    assert y == pytest.approx([30.0, 40.0], abs=1e-6)


def test_task_budgets_with_rates_split_the_need_by_gain():
    """The floor as before (weight task, floor by pool: 20 · (3/4, 1/4) = (15, 5)); the need's 20 by
    :func:`gain_split` with w = 1/2, the floor's samples and the pool sizes as room."""
    from adapt.methods.hindsight import gain_split

    sizes, need, rates = {"a": 300, "b": 100}, {"a": 0.5, "b": 1.0}, {"a": 0.05, "b": 0.01}
    tb = task_budgets(sizes, need, 40, 0.5, weight="task", floor_weight="pool", rates=rates)
    y = gain_split(np.array([0.5, 0.5]), np.array([0.5, 1.0]), np.array([0.05, 0.01]), np.array([15.0, 5.0]),
                   np.array([300, 100]), 20.0)
    assert y == pytest.approx([6.938, 13.062], abs=1e-3)  # the need split would give (6.67, 13.33)
    assert tb.floor == pytest.approx({"a": 15.0, "b": 5.0})
    assert tb.need == pytest.approx({"a": y[0], "b": y[1]}) and sum(tb.need.values()) == pytest.approx(20.0)
    assert tb.quota == {"a": 22, "b": 18}
    # a fast learner past its knee after the floor's 15 samples (e^{-3}) gets none of the need
    assert task_budgets(sizes, need, 40, 0.5, weight="task", floor_weight="pool", rates={"a": 0.2, "b": 0.01}).quota \
        == {"a": 15, "b": 25}
    # a task without a rate gets the median of the others'; no rate at all: the need split
    assert task_budgets({**sizes, "c": 100}, {**need, "c": 1.0}, 40, 0.5, weight="task", floor_weight="pool",
                        rates={**rates, "c": None}).quota == \
        task_budgets({**sizes, "c": 100}, {**need, "c": 1.0}, 40, 0.5, weight="task", floor_weight="pool",
                     rates={**rates, "c": 0.03}).quota
    assert task_budgets(sizes, need, 40, 0.5, weight="task", floor_weight="pool", rates={"a": None, "b": None}).quota \
        == task_budgets(sizes, need, 40, 0.5, weight="task", floor_weight="pool").quota


def test_learning_rate_and_probe_split_by_hand():
    from adapt.methods.reference import learning_rate, probe_split

    assert learning_rate(0.8, 0.2, 100) == pytest.approx(math.log(4) / 100)
    assert learning_rate(0.2, 0.8, 100) == 0.0  # a need that rose: no learning
    assert learning_rate(0.5, 0.0, 10) == pytest.approx(math.log(0.5 / 1e-6) / 10)
    rows = np.arange(100, 130)
    train, held = probe_split(rows, 8, np.random.default_rng(0))
    assert len(train) == len(held) == 8 and not set(train) & set(held) and set(train) | set(held) <= set(rows)
    train, held = probe_split(rows, 50, np.random.default_rng(0))  # at most half of the task
    assert len(train) == len(held) == 15 and sorted([*train, *held]) == rows.tolist()


# ------------------------------------------------------------------------------------- the forgetting guard
def test_task_budgets_with_a_guarded_task_by_hand():
    # the first example's shares (0.375, 0.625) of 40: a guarded task below its pool share (1/2) is raised to it
    sizes, need = {"a": 100, "b": 100}, {"a": 1.0, "b": 3.0}
    assert task_budgets(sizes, need, 40, 0.5, guard={"a"}).quota == {"a": 20, "b": 20}
    assert task_budgets(sizes, need, 40, 0.5, guard={"b"}).quota == {"a": 15, "b": 25}  # above its share: as is
    # three tasks of 100, L = (1, 2, 2.5), B = 60: shares 1/6 + ½·L/5.5 = (0.258, 0.348, 0.394); a < 1/3 is held
    # at 1/3; then b gets 1/6 + ⅓·2/4.5 = 0.315 < 1/3, held too; c keeps the last third
    sizes, need = {"a": 100, "b": 100, "c": 100}, {"a": 1.0, "b": 2.0, "c": 2.5}
    tb = task_budgets(sizes, need, 60, 0.5, guard={"a", "b"})
    assert tb.quota == {"a": 20, "b": 20, "c": 20}
    assert tb.floor == pytest.approx({"a": 20.0, "b": 20.0, "c": 10.0}) and tb.need == pytest.approx(
        {"a": 0.0, "b": 0.0, "c": 10.0})
    # b not guarded: a held at 20, b 60(1/6 + ⅓·2/4.5) = 18.89, c 60(1/6 + ⅓·2.5/4.5) = 21.11
    tb = task_budgets(sizes, need, 60, 0.5, guard={"a"})
    assert tb.floor["b"] + tb.need["b"] == pytest.approx(60 * (1 / 6 + 2 / 13.5))
    assert tb.quota == {"a": 20, "b": 19, "c": 21}
    assert task_budgets(sizes, need, 60, 0.5).quota == {"a": 15, "b": 21, "c": 24}  # 15.45, 20.91, 23.64


def test_forgetting_z_by_hand():
    from adapt.methods.hindsight import forgetting_z

    # mean 0.2, s = 0.1414, se = √2 · s / √2 = s: (0.2 − 0.1) / 0.1414
    assert forgetting_z(np.array([0.1, 0.3]), 0.1) == pytest.approx(0.1 / math.sqrt(0.02))
    assert forgetting_z(np.array([0.1, 0.3]), 0.3) == pytest.approx(-0.1 / math.sqrt(0.02))
    assert forgetting_z(np.array([0.5]), 0.0) == 0.0 and forgetting_z(np.full(5, 0.5), 0.0) == 0.0


def _selector_json(files: RoundLayout, tasks: dict) -> None:
    files.dir.mkdir(parents=True, exist_ok=True)
    files.selector.write_text(json.dumps({"method": "hindsight", "tasks": tasks}))


def test_best_need_since_trained_reads_the_rounds_after_the_first_training(tmp_path):
    from adapt.methods.hindsight import best_need_since_trained

    rounds = [RoundLayout(tmp_path / "rounds" / str(r)) for r in range(4)]
    _selector_json(rounds[0], {"a": {"need": 0.9, "selected": 5}})
    _selector_json(rounds[1], {"a": {"need": 0.4, "selected": 2}, "b": {"need": 0.95, "selected": 0}})
    _selector_json(rounds[2], {"a": {"need": 0.5, "selected": 1}, "b": {"need": 0.8, "selected": 3}})
    _selector_json(rounds[3], {"a": {"need": 0.45, "selected": 1}, "b": {"need": 0.6, "selected": 3}})
    # a: first trained in round 0, lowest after it 0.4 (round 1); b: first trained in round 2, nothing after it yet
    assert best_need_since_trained(rounds[3], 3) == {"a": 0.4}
    assert best_need_since_trained(rounds[3], 4) == {"a": 0.4, "b": 0.6}
    assert best_need_since_trained(rounds[1], 1) == {}


@pytest.fixture()
def round2(round1, tmp_path):
    """round1's pool and stores as round 2: round 0 trained a/0..19 (its selector.json: a's need 0.9),
    round 1 trained a/20..29 and b/0..9."""
    pool, r1, loss, group = round1
    r2 = RoundLayout(tmp_path / "rounds" / "2")
    r1.dir.rename(r2.dir)
    r0, r1 = RoundLayout(tmp_path / "rounds" / "0"), RoundLayout(tmp_path / "rounds" / "1")
    _selector_json(r0, {"a": {"need": 0.9, "selected": 20}})
    r1.dir.mkdir(parents=True)
    uids = pool["uid"].tolist()
    picked = [f"a/{i}" for i in range(20, 30)] + [f"b/{i}" for i in range(10)]
    pd.DataFrame({"uid": uids, "selected": pool["uid"].isin(picked)}).to_parquet(r1.selection)
    return pool, r1, r2, loss


@pytest.mark.parametrize("best_a, guarded", [(0.0, True), (0.9, False)])
def test_forgetting_guard_gives_a_forgotten_task_its_pool_share(round2, best_a, guarded):
    from adapt.methods.hindsight import forgetting_z, need_values

    pool, r1, r2, loss = round2
    _selector_json(r1, {"a": {"need": best_a, "selected": 10}, "b": {"need": 0.99, "selected": 10}})
    cfg = ExperimentConfig.model_validate(
        {"selection": {"method": "hindsight", "hindsight": {"budget": {"forgetting_guard": True}}}})
    out = Hindsight(cfg).select(SelectionContext(round=2, pool=pool, new_uids=[], budget=24, seed=0, config=cfg,
                                                 files=r2))
    need = _answer_error_need(loss)
    # no flags (round 1 trained 10 of a, fewer than min_trained): a's need over its 40, b's over its 20
    values = need_values(loss.astype(np.float32).astype(np.float64)[:40], "answer_error", 1 + np.arange(40) % 3)
    need["a"] = float(values.mean())
    z = forgetting_z(values, best_a)
    assert (z >= 2.0) == guarded
    expected = task_budgets({"a": 40, "b": 20}, need, 24, 0.5, weight="task", floor_weight="pool",
                            guard={"a"} if guarded else ())
    assert out.table.loc[out.table["selected"], "task"].value_counts().to_dict() == expected.quota
    assert out.summary["tasks"]["a"]["guarded"] is guarded
    assert out.summary["tasks"]["a"]["forgetting_z"] == round(z, 3) and "guarded" not in out.summary["tasks"]["b"]
    if guarded:  # a at its pool share, 24 · 40 / 60 = 16, where the need alone gives it less
        assert expected.quota["a"] == 16 > task_budgets({"a": 40, "b": 20}, need, 24, 0.5, weight="task",
                                                        floor_weight="pool").quota["a"]
