"""Continual metrics against matrices worked out by hand (DESIGN.md, "Continual metrics")."""

import math

import pytest

from adapt.evaluation.continual_metrics import METRIC_KEYS, continual_metrics, relative_score

nan = float("nan")


def test_three_by_three_by_hand():
    R = [
        [0.8, 0.1, 0.0],
        [0.6, 0.9, 0.2],
        [0.5, 0.7, 0.95],
    ]
    R0 = [0.0, 0.05, 0.1]
    m = continual_metrics(R, R0)
    assert set(m) == set(METRIC_KEYS)
    # A = (0.5 + 0.7 + 0.95) / 3 = 2.15 / 3
    assert m["avg_accuracy"] == pytest.approx(2.15 / 3)  # 0.71667
    # MAA: t=0: 0.8; t=1: (0.6 + 0.9) / 2 = 0.75; t=2: 2.15 / 3 = 0.71667
    #      -> (0.8 + 0.75 + 0.71667) / 3 = 0.75556
    assert m["maa"] == pytest.approx((0.8 + 0.75 + 2.15 / 3) / 3)
    assert m["maa"] == pytest.approx(0.755556, abs=1e-6)
    # BWT: j=0: 0.5 - 0.8 = -0.3; j=1: 0.7 - 0.9 = -0.2 -> -0.25
    assert m["bwt"] == pytest.approx(-0.25)
    # F: j=0: max(0.8, 0.6) - 0.5 = 0.3; j=1: max(0.9) - 0.7 = 0.2 -> 0.25
    assert m["forgetting"] == pytest.approx(0.25)
    # FWT: j=1: R[0][1] - R0[1] = 0.1 - 0.05 = 0.05; j=2: R[1][2] - R0[2] = 0.2 - 0.1 = 0.1 -> 0.075
    assert m["fwt"] == pytest.approx(0.075)


# A 4x4 matrix in which task 0 dips after round 1 and recovers at round 2, so the max-based
# forgetting differs from -BWT.
R4 = [
    [0.6, 0.2, 0.1, 0.0],
    [0.4, 0.8, 0.3, 0.1],
    [0.7, 0.5, 0.9, 0.2],
    [0.5, 0.6, 0.4, 1.0],
]
R4_0 = [0.1, 0.1, 0.2, 0.0]


def test_four_by_four_by_hand():
    m = continual_metrics(R4, R4_0)
    # A = (0.5 + 0.6 + 0.4 + 1.0) / 4 = 2.5 / 4 = 0.625
    assert m["avg_accuracy"] == pytest.approx(0.625)
    # MAA: t=0: 0.6; t=1: (0.4 + 0.8) / 2 = 0.6; t=2: (0.7 + 0.5 + 0.9) / 3 = 0.7; t=3: 0.625
    #      -> (0.6 + 0.6 + 0.7 + 0.625) / 4 = 2.525 / 4 = 0.63125
    assert m["maa"] == pytest.approx(0.63125)
    # BWT: j=0: 0.5 - 0.6 = -0.1; j=1: 0.6 - 0.8 = -0.2; j=2: 0.4 - 0.9 = -0.5 -> -0.8 / 3
    assert m["bwt"] == pytest.approx(-0.8 / 3)  # -0.26667
    # F: j=0: max(0.6, 0.4, 0.7) - 0.5 = 0.2; j=1: max(0.8, 0.5) - 0.6 = 0.2; j=2: 0.9 - 0.4 = 0.5
    #    -> 0.9 / 3 = 0.3  (not -BWT: task 0's best score came after its own round)
    assert m["forgetting"] == pytest.approx(0.3)
    # FWT: j=1: 0.2 - 0.1 = 0.1; j=2: R[1][2] - R0[2] = 0.3 - 0.2 = 0.1; j=3: R[2][3] - R0[3] = 0.2 - 0 = 0.2
    #      -> 0.4 / 3
    assert m["fwt"] == pytest.approx(0.4 / 3)


def test_no_r0_means_no_fwt():
    m = continual_metrics(R4)
    assert m["fwt"] is None
    assert m["bwt"] == pytest.approx(-0.8 / 3)


def test_single_round():
    # T == 1, one task: A = MAA = 0.7; no earlier task -> BWT and F undefined; no task j > 0 -> no FWT
    m = continual_metrics([[0.7]], [0.2])
    assert m == {"avg_accuracy": pytest.approx(0.7), "maa": pytest.approx(0.7), "bwt": None, "forgetting": None,
                 "fwt": None}


def test_partial_matrix_two_of_four_rounds():
    # T = 2 rows done out of N = 4 tasks (first two rows of R4)
    m = continual_metrics(R4[:2], R4_0)
    # A over the tasks seen so far (j < 2): (0.4 + 0.8) / 2 = 0.6
    assert m["avg_accuracy"] == pytest.approx(0.6)
    # MAA: t=0: 0.6; t=1: 0.6 -> 0.6
    assert m["maa"] == pytest.approx(0.6)
    # BWT: j=0: 0.4 - 0.6 = -0.2;  F: j=0: 0.6 - 0.4 = 0.2
    assert m["bwt"] == pytest.approx(-0.2)
    assert m["forgetting"] == pytest.approx(0.2)
    # FWT over the tasks whose "before" row exists (j <= T = 2): j=1: 0.1; j=2: 0.3 - 0.2 = 0.1 -> 0.1
    assert m["fwt"] == pytest.approx(0.1)


def test_partial_matrix_one_row():
    # T = 1 of 4: A = R[0][0] = 0.6; FWT: j=1 only: R[0][1] - R0[1] = 0.2 - 0.1 = 0.1
    m = continual_metrics(R4[:1], R4_0)
    assert m["avg_accuracy"] == pytest.approx(0.6)
    assert m["maa"] == pytest.approx(0.6)
    assert m["bwt"] is None and m["forgetting"] is None
    assert m["fwt"] == pytest.approx(0.1)


def test_several_tasks_in_one_round():
    # tasks a, b introduced at round 0, c at round 1
    R = [[0.5, 0.3, 0.1], [0.4, 0.2, 0.9]]
    m = continual_metrics(R, [0.0, 0.0, 0.05], introduced=[0, 0, 1])
    # A = (0.4 + 0.2 + 0.9) / 3 = 0.5; MAA: t=0: (0.5 + 0.3) / 2 = 0.4; t=1: 0.5 -> 0.45
    assert m["avg_accuracy"] == pytest.approx(0.5)
    assert m["maa"] == pytest.approx(0.45)
    # BWT: (0.4 - 0.5 + 0.2 - 0.3) / 2 = -0.1;  F: (0.1 + 0.1) / 2 = 0.1
    assert m["bwt"] == pytest.approx(-0.1)
    assert m["forgetting"] == pytest.approx(0.1)
    # FWT: only c (introduced at round 1 > 0): R[0][2] - R0[2] = 0.1 - 0.05 = 0.05
    assert m["fwt"] == pytest.approx(0.05)
    # with the default introduced[j] = j the same matrix is a partial run of 2 of 3 rounds
    assert continual_metrics(R)["avg_accuracy"] == pytest.approx(0.3)  # (0.4 + 0.2) / 2


def test_nan_entries_are_left_out():
    # task 1 not evaluated after round 0
    R = [[0.8, nan], [0.6, 0.9]]
    m = continual_metrics(R, [0.0, 0.0])
    assert m["avg_accuracy"] == pytest.approx(0.75)
    assert m["maa"] == pytest.approx((0.8 + 0.75) / 2)
    assert m["bwt"] == pytest.approx(-0.2)
    assert m["fwt"] is None  # the only FWT term is NaN


def test_bad_matrices():
    with pytest.raises(ValueError, match="no rows"):
        continual_metrics([])
    with pytest.raises(ValueError, match="row 1"):
        continual_metrics([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match="R0"):
        continual_metrics([[0.1, 0.2]], [0.1])
    with pytest.raises(ValueError, match="introduced"):
        continual_metrics([[0.1, 0.2]], introduced=[0])


def test_relative_score():
    # 100 * mean(0.5 / 1.0, 0.7 / 0.7) = 100 * (0.5 + 1.0) / 2 = 75; task 2 skipped (Rref = 0)
    assert relative_score([0.5, 0.7, 0.95], [1.0, 0.7, 0.0]) == pytest.approx(75.0)
    # better than the reference: 100 * mean(0.9 / 0.6, 0.5 / 0.5) = 100 * 1.25 = 125
    assert relative_score([0.9, 0.5], [0.6, 0.5]) == pytest.approx(125.0)
    assert relative_score([0.5], [0.0]) is None
    assert math.isnan(nan) and relative_score([nan, 0.4], [0.5, 0.8]) == pytest.approx(50.0)
    with pytest.raises(ValueError):
        relative_score([0.5], [0.5, 0.5])


def test_forgetting_per_task_by_hand():
    from adapt.evaluation.continual_metrics import forgetting_per_task

    R = [[0.5, 0.0, 0.1],
         [0.9, 0.4, 0.2],
         [0.3, 0.6, 0.8]]
    # a: max(0.5, 0.9) - 0.3; b: 0.4 - 0.6 (it improved); c: introduced in the last round
    out = forgetting_per_task(R)
    assert out[0] == pytest.approx(0.6) and out[1] == pytest.approx(-0.2) and out[2] is None
    assert continual_metrics(R)["forgetting"] == pytest.approx(0.2)
    assert forgetting_per_task(R, introduced=[0, 0, 1]) == pytest.approx([0.6, -0.2, -0.6])


def test_metrics_after_each_round_by_hand():
    from adapt.evaluation.continual_metrics import metrics_after_round

    # task 0 is best after round 1 (not its own round), task 1 drops at round 2
    R = [[0.5, 0.1, 0.0],
         [0.8, 0.6, 0.2],
         [0.7, 0.3, 0.9]]
    R0 = [0.0, 0.05, 0.1]
    after = [metrics_after_round(R, R0, t) for t in range(3)]
    # round 0: A = MAA = R[0][0] = 0.5; no earlier task: BWT, F None;
    #          FWT: the one "before" term measured, j=1: R[0][1] - R0[1] = 0.1 - 0.05 = 0.05
    assert after[0] == {"avg_accuracy": pytest.approx(0.5), "maa": pytest.approx(0.5), "bwt": None,
                        "forgetting": None, "fwt": pytest.approx(0.05), "forgetting_per_task": [None, None, None]}
    # round 1: A = (0.8 + 0.6) / 2 = 0.7; MAA = (0.5 + 0.7) / 2 = 0.6
    #          BWT: j=0: R[1][0] - R[0][0] = 0.8 - 0.5 = 0.3;  F: j=0: max(R[0][0]) - R[1][0] = 0.5 - 0.8 = -0.3
    #          FWT: j=1: 0.05; j=2: R[1][2] - R0[2] = 0.2 - 0.1 = 0.1 -> 0.075
    a1 = after[1]
    assert a1["avg_accuracy"] == pytest.approx(0.7) and a1["maa"] == pytest.approx(0.6)
    assert a1["bwt"] == pytest.approx(0.3) and a1["forgetting"] == pytest.approx(-0.3)
    assert a1["fwt"] == pytest.approx(0.075)
    assert a1["forgetting_per_task"] == [pytest.approx(-0.3), None, None]
    # round 2: A = (0.7 + 0.3 + 0.9) / 3 = 1.9 / 3; MAA = (0.5 + 0.7 + 1.9 / 3) / 3
    #          BWT: j=0: 0.7 - 0.5 = 0.2; j=1: 0.3 - 0.6 = -0.3 -> -0.05
    #          F:   j=0: max(0.5, 0.8) - 0.7 = 0.1; j=1: max(0.6) - 0.3 = 0.3 -> 0.2  (not -BWT)
    #          FWT: 0.075 (no task 3)
    a2 = after[2]
    assert a2["avg_accuracy"] == pytest.approx(1.9 / 3) and a2["maa"] == pytest.approx((1.2 + 1.9 / 3) / 3)
    assert a2["bwt"] == pytest.approx(-0.05) and a2["forgetting"] == pytest.approx(0.2)
    assert a2["fwt"] == pytest.approx(0.075)
    assert a2["forgetting_per_task"] == [pytest.approx(0.1), pytest.approx(0.3), None]
    # after the last round: the whole run's metrics; t defaults to the last row; rows after t are ignored
    assert {k: a2[k] for k in METRIC_KEYS} == continual_metrics(R, R0)
    assert metrics_after_round(R, R0) == a2 and metrics_after_round(R[:2], R0) == a1
    assert metrics_after_round(R, None, 1)["fwt"] is None
    with pytest.raises(ValueError, match="round 3"):
        metrics_after_round(R, R0, 3)


def test_metrics_after_round_with_a_round_without_eval():
    from adapt.evaluation.continual_metrics import metrics_after_round

    # tasks a (round 0) and c (round 2); round 1 brought a dataset without an eval split
    R = [[0.6, 0.1], [0.4, 0.2], [0.5, 0.8]]
    m = metrics_after_round(R, [0.0, 0.0], 1, introduced=[0, 2])
    # after round 1 only a is seen: A = 0.4; BWT = 0.4 - 0.6; F = 0.6 - 0.4; FWT: c's term R[1][1] - 0 = 0.2
    assert m["avg_accuracy"] == pytest.approx(0.4) and m["bwt"] == pytest.approx(-0.2)
    assert m["forgetting"] == pytest.approx(0.2) and m["fwt"] == pytest.approx(0.2)
    assert m["forgetting_per_task"] == [pytest.approx(0.2), None]
