import math

import pytest

from adapt.evaluation.answer_scorers import (
    ANSWER_SCORERS,
    box_iou,
    exact_match,
    iou_match,
    normalize_answer,
    numeric_match,
    parse_box,
    parse_number,
    score_answers,
)


def test_registry_has_the_three_scorers():
    assert {"exact", "numeric", "iou"} <= set(ANSWER_SCORERS.names())
    assert ANSWER_SCORERS.get("exact") is exact_match
    with pytest.raises(KeyError, match="known: .*exact"):
        ANSWER_SCORERS.get("bleu-42")


# ----------------------------------------------------------------------------------- exact
@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("red", "red", 1.0),
        ("  Red.  ", "red", 1.0),  # case, outer whitespace, trailing period
        ("RED!?", "red", 1.0),  # several trailing marks
        ("red .", "red", 1.0),  # space before the trailing mark
        ("dark   \t red", "dark red", 1.0),  # inner whitespace collapsed
        ("red\nThe shape is red because...", "red", 1.0),  # junk after a newline
        ("\n\nred\njunk", "red", 1.0),  # leading empty lines skipped
        ("red, I think", "red", 0.0),
        ("reddish", "red", 0.0),
        ("", "red", 0.0),
        ("red", "", 0.0),
        ("a.b", "a.b", 1.0),  # inner punctuation kept
        ("a.b", "ab", 0.0),
        ("e\u0301te\u0301", "\u00e9t\u00e9", 1.0),  # NFD vs NFC "été"
        ("ÉTÉ", "été", 1.0),  # unicode lowercase
        ("oui, sûr", "Oui, sûr.", 1.0),
        ("line one\nline two", "line one line two", 1.0),  # multi-line reference
    ],
)
def test_exact(pred, ref, expected):
    assert exact_match(pred, ref) == expected


def test_normalize_answer():
    assert normalize_answer("  Hello \n  World!! ") == "hello world"
    assert normalize_answer("?!.") == ""


# --------------------------------------------------------------------------------- numeric
@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        ("3", "3", 1.0),
        ("3.0", "3", 1.0),
        ("There are 3 cats.", "3", 1.0),
        ("3 cats and 4 dogs", "3", 1.0),  # the first number counts
        ("4 dogs and 3 cats", "3", 0.0),
        ("-2.5", "-2.5", 1.0),
        ("+7", "7", 1.0),
        ("−4", "-4", 1.0),  # unicode minus
        ("2", "-2", 0.0),
        (".5", "0.5", 1.0),
        ("1e3", "1000", 1.0),
        ("1,000", "1000", 1.0),  # thousands separator
        ("1000.0005", "1000", 1.0),  # |a-b| = 5e-4 <= 1e-6 * 1000 = 1e-3
        ("1000.002", "1000", 0.0),  # 2e-3 > 1e-3
        ("0.0000005", "0", 1.0),  # 5e-7 <= 1e-6 * max(1, 0)
        ("0.000002", "0", 0.0),
        ("three", "3", 0.0),  # unparseable
        ("", "3", 0.0),
        ("3", "n/a", 0.0),
        ("3\n4", "3", 1.0),
    ],
)
def test_numeric(pred, ref, expected):
    assert numeric_match(pred, ref) == expected


def test_parse_number():
    assert parse_number("x = -12.75 units") == -12.75
    assert parse_number("no number") is None
    assert parse_number("v2") == 2.0


# ------------------------------------------------------------------------------------- iou
def test_box_iou_by_hand():
    # identical
    assert box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    # [0,0,2,2] vs [1,0,3,2]: intersection 1*2 = 2, union 4 + 4 - 2 = 6 -> 1/3
    assert box_iou([0, 0, 2, 2], [1, 0, 3, 2]) == pytest.approx(1 / 3)
    # disjoint, and touching at an edge
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0
    assert box_iou([0, 0, 1, 1], [1, 0, 2, 1]) == 0.0
    # degenerate (zero width / inverted) and wrong length
    assert box_iou([0, 0, 0, 1], [0, 0, 1, 1]) == 0.0
    assert box_iou([2, 2, 1, 1], [0, 0, 1, 1]) == 0.0
    assert box_iou([0, 0, 1], [0, 0, 1, 1]) == 0.0
    assert box_iou([0, 0, math.inf, 1], [0, 0, 1, 1]) == 0.0


@pytest.mark.parametrize(
    "pred, ref, expected",
    [
        # IoU exactly 0.5: [0,0,1,1] inside [0,0,2,1]: inter 1, union 2
        ("[0, 0, 1, 1]", "[0, 0, 2, 1]", 1.0),
        # IoU 0.5 with decimals: [0.1,0.1,0.3,0.2] vs [0.1,0.1,0.2,0.2]: inter 0.01, union 0.02
        ("[0.1, 0.1, 0.3, 0.2]", "[0.1, 0.1, 0.2, 0.2]", 1.0),
        # IoU 0.49: [0,0,49,1] inside [0,0,100,1]: inter 49, union 100
        ("[0, 0, 49, 1]", "[0, 0, 100, 1]", 0.0),
        # IoU 0.51
        ("[0,0,51,1]", "[0,0,100,1]", 1.0),
        # 1/3
        ("[0, 0, 2, 2]", "[1, 0, 3, 2]", 0.0),
        # text around the box, no brackets, no spaces, large pixel coordinates
        ("The box is [10, 20, 110, 220].", "[10, 20, 110, 220]", 1.0),
        ("10 20 110 220", "[10,20,110,220]", 1.0),
        ("[100,200,300,400]", "[100, 200, 300, 400]", 1.0),
        ("[0.1, 0.2, 0.3]", "[0.1, 0.2, 0.3, 0.4]", 0.0),  # three numbers only
        ("no box", "[0, 0, 1, 1]", 0.0),
        ("[1, 1, 0, 0]", "[0, 0, 1, 1]", 0.0),  # inverted -> degenerate
        ("[0, 0, 1, 1]", "[0, 0, 0, 0]", 0.0),  # degenerate reference
    ],
)
def test_iou(pred, ref, expected):
    assert iou_match(pred, ref) == expected


def test_parse_box():
    assert parse_box("[1, -2, 3.5, 4]") == (1.0, -2.0, 3.5, 4.0)
    assert parse_box("[1, 2]") is None


# ----------------------------------------------------------------------------------- mean
def test_score_answers_is_the_mean():
    assert score_answers("exact", ["red", "Blue.", "green"], ["red", "blue", "red"]) == pytest.approx(2 / 3)
    assert score_answers("numeric", ["1", "2"], ["1", "3"]) == 0.5
    assert math.isnan(score_answers("iou", [], []))
    with pytest.raises(ValueError):
        score_answers("exact", ["a"], [])
    with pytest.raises(KeyError):
        score_answers("nope", ["a"], ["a"])


@pytest.mark.parametrize("name", ANSWER_SCORERS.names())
def test_every_scorer_is_in_unit_interval_and_never_raises(name):
    scorer = ANSWER_SCORERS.get(name)
    for p, r in [("", ""), ("\n\n", "x"), ("[nan, inf, 1e999, -]", "[0,0,1,1]"), ("🙂", "🙂"), ("1" * 400, "1")]:
        assert 0.0 <= scorer(p, r) <= 1.0


def test_best_constant_is_the_chance_level_by_hand():
    from adapt.evaluation.answer_scorers import best_constant

    assert best_constant("exact", ["red", "blue", "Red", "green"]) == ("red", 0.5)  # "Red" normalises to red
    assert best_constant("numeric", ["2", "2.0", "3", "3", "3"]) == ("3", 0.6)
    # two quadrant boxes: the top-left one is right for 2 of 3 (IoU of the two is 1/3 < 0.5)
    boxes = ["[0, 0, 0.5, 0.5]", "[0, 0, 0.5, 0.5]", "[0, 0.25, 0.5, 0.75]"]
    assert best_constant("iou", boxes) == ("[0, 0, 0.5, 0.5]", pytest.approx(2 / 3))
