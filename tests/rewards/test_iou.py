import pytest

from visd_core.rewards.iou import box_iou, coverage_iou, interval_iou, object_iou, scale_box


def test_interval_iou_worked_examples():
    assert interval_iou((2.0, 6.0), (4.0, 8.0)) == pytest.approx(2 / 6)      # overlap 4-6 over 2-8
    assert interval_iou((1.0, 3.0), (1.0, 3.0)) == 1.0
    assert interval_iou((0.0, 10.0), (2.0, 4.0)) == pytest.approx(0.2)      # contained
    assert interval_iou((0.0, 1.0), (2.0, 3.0)) == 0.0                      # disjoint
    assert interval_iou((0.0, 1.0), (1.0, 2.0)) == 0.0                      # touching


def test_interval_iou_degenerate_and_inverted():
    assert interval_iou((3.0, 3.0), (3.0, 3.0)) == 0.0      # zero length has no measure
    assert interval_iou((3.0, 3.0), (2.0, 4.0)) == 0.0
    assert interval_iou((5.0, 2.0), (2.0, 5.0)) == 0.0      # inverted prediction is no prediction
    assert interval_iou((2.0, 5.0), (5.0, 2.0)) == 0.0


def test_box_iou_worked_examples():
    assert box_iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # sharing an edge
    assert box_iou((0, 0, 4, 4), (1, 1, 3, 3)) == pytest.approx(4 / 16)


def test_box_iou_zero_area_and_inverted():
    assert box_iou((5, 5, 5, 9), (0, 0, 10, 10)) == 0.0     # zero width
    assert box_iou((5, 5, 5, 5), (5, 5, 5, 5)) == 0.0
    assert box_iou((10, 10, 0, 0), (0, 0, 10, 10)) == 0.0   # inverted


def test_coverage_iou_is_iou_for_one_box_and_mean_over_instances():
    a, b = (0, 0, 10, 10), (20, 20, 30, 30)
    assert coverage_iou([a, b], [a]) == 1.0                 # the best predicted box counts
    assert coverage_iou([a], [a, b]) == 0.5                 # one of two instances found
    assert coverage_iou([a, b], [a, b]) == 1.0
    assert coverage_iou([], [a]) == 0.0 and coverage_iou([a], []) == 0.0


def test_object_iou_max_is_the_equations_mean_is_coverage():
    a, b, half_a = (0, 0, 10, 10), (20, 20, 30, 30), (0, 0, 10, 5)
    assert object_iou([a], [a, b]) == 1.0 and object_iou([a], [a, b], "mean") == 0.5      # visd eq. 13
    assert object_iou([half_a, b], [a]) == 0.5 == object_iou([half_a, b], [a], "mean")   # best predicted box
    assert object_iou([half_a], [a]) == 0.5 == object_iou([half_a], [a], "mean")         # one GT box: equal
    assert object_iou([], [a]) == 0.0 and object_iou([a], []) == 0.0


def test_scale_box_denormalizes_into_the_resized_frame():
    assert scale_box([0.25, 0.5, 0.75, 1.0], (448, 336)) == (112.0, 168.0, 336.0, 336.0)
