"""The accuracy harness must give exactly the TCPDBench figures on small hand-worked cases."""

import pytest

from popcorn.signals.evaluate import (
    EvaluationError,
    covering,
    evaluate,
    f_measure,
    matched,
)
from popcorn.signals.generate import generate_labelled


def test_perfect_prediction_scores_one() -> None:
    score = f_measure([[50, 100]], [50, 100])
    assert (score.f1, score.precision, score.recall) == (1.0, 1.0, 1.0)
    assert covering([[50, 100]], [50, 100], 200) == 1.0


def test_f1_by_hand_with_margin_and_two_annotators() -> None:
    # Annotators: {0, 10, 50} and {0, 12}; predictions {0, 11, 30, 52}.
    # Precision against the union {0, 10, 12, 50}: 0, 11 (for 10), 52 (for 50) match -> 3/4.
    # Annotator 1: 0, 10->11, 50->52 -> 3/3. Annotator 2: 0, 12->11 -> 2/2. Recall = 1.
    score = f_measure([[10, 50], [12]], [11, 30, 52], margin=5)
    assert score.precision == pytest.approx(3 / 4)
    assert score.recall == pytest.approx(1.0)
    assert score.f1 == pytest.approx(2 * 0.75 / 1.75)


def test_matching_is_one_to_one() -> None:
    # Two true points near one prediction: only one of them can be matched.
    assert matched([10, 12], [11], margin=5) == 1
    # Outside the margin nothing matches.
    assert matched([10], [16], margin=5) == 0
    assert matched([10], [15], margin=5) == 1


def test_no_prediction_still_counts_the_origin() -> None:
    # Only the index 0 is predicted: precision 1/1, recall 1/2 (origin of {0, 40}).
    score = f_measure([[40]], [])
    assert score.precision == 1.0
    assert score.recall == pytest.approx(0.5)
    assert score.f1 == pytest.approx(2 / 3)


def test_cover_by_hand() -> None:
    # Truth [0,50) [50,100); prediction [0,40) [40,100).
    # Segment [0,50): best Jaccard with [0,40) = 40/50; [50,100): with [40,100) = 50/60.
    expected = (50 * 40 / 50 + 50 * 50 / 60) / 100
    assert covering([[50]], [40], 100) == pytest.approx(expected)
    # Averaged over annotators: the second annotator has no change at all, covered by
    # the prediction with best overlaps 60/100 -> (100 * 0.6) / 100.
    both = covering([[50], []], [40], 100)
    assert both == pytest.approx((expected + 0.6) / 2)


def test_bad_labels_are_rejected_with_the_field_name() -> None:
    with pytest.raises(EvaluationError, match="annotations"):
        f_measure([], [1])
    with pytest.raises(EvaluationError, match="predictions"):
        f_measure([[3]], [-1])
    with pytest.raises(EvaluationError, match="n"):
        covering([[3]], [3], 0)


def test_evaluate_averages_over_series() -> None:
    data = generate_labelled(3, seed=5, n=200)
    perfect = {id(s.values): s.annotations[0] for s in data}
    result = evaluate(lambda v: perfect[id(v)], data, name="oracle")
    assert result.name == "oracle"
    assert len(result.per_series) == 3
    assert 0.5 < result.f1 <= 1.0
    assert "| oracle |" in result.row()
