"""The dynamic sampling rules (training/sampling.py) and the head's standardisation, in plain numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training import sampling
from training.metrics import confusion, per_class

NAN = float("nan")


def test_precision_recall_step_numbers():
    step = sampling.precision_recall_step(precision=[0.9, 0.5, NAN, 0.8], recall=[0.5, 0.9, NAN, 0.8],
                                          support=[50, 50, 0, 10], rate=2.0, shrink=50.0)
    # 2 * (P - R) * n / (n + 50): under-predicted up, over-predicted down, no score: no move
    assert np.allclose(step, [0.4, -0.4, 0.0, 0.0])
    # shrink 0: the whole step wherever the class has val records
    assert np.allclose(sampling.precision_recall_step([0.9, 0.2], [0.5, 0.2], [3, 0], 1.0, 0.0), [0.4, 0.0])


def pr_sampler(classes=3, **kw):
    return sampling.DynamicSampler(classes, "dynamic", kw.pop("min_share", 0.0), rule="precision_recall",
                                   rate=kw.pop("rate", 2.0), shrink=kw.pop("shrink", 50.0), **kw)


def test_controller_is_multiplicative_and_starts_uniform():
    s = pr_sampler()
    assert np.allclose(s.shares, 1 / 3)
    p, r, n = np.array([0.9, 0.5, 0.7]), np.array([0.5, 0.9, 0.7]), np.array([50, 50, 50])
    first = s.update(f1=2 * p * r / (p + r), precision=p, recall=r, support=n)
    w = np.exp([0.4, -0.4, 0.0])
    assert np.allclose(first, w / w.sum())  # [0.4718, 0.2120, 0.3162]
    assert np.allclose(first, [0.47177, 0.21198, 0.31624], atol=1e-5)
    second = s.update(f1=None, precision=p, recall=r, support=n)
    w = np.exp([0.8, -0.8, 0.0])
    assert np.allclose(second, w / w.sum())  # the same gap again: the weights move again


def test_controller_tells_over_from_under_predicted_where_1_minus_f1_cannot():
    # class 0 over-predicted (recall 0.9, precision 0.3), class 1 under-predicted (0.3 / 0.9):
    # the same F1, so 1 - F1 gives both the same share; the controller moves them apart.
    p, r, n = np.array([0.3, 0.9, 0.9]), np.array([0.9, 0.3, 0.9]), np.array([100, 100, 100])
    f1 = 2 * p * r / (p + r)
    f1_rule = sampling.DynamicSampler(3, "dynamic", 0.0, 1.0, rule="f1").update(f1)
    assert f1_rule[0] == pytest.approx(f1_rule[1])
    pr = pr_sampler().update(f1, p, r, n)
    assert pr[1] > 1 / 3 > pr[0]
    assert pr[1] / pr[0] == pytest.approx(math.exp(2 * 2 * 0.6 * 100 / 150))


def test_shrink_keeps_tiny_val_classes_near_where_they_are():
    p, r = np.array([1.0, 0.0, 0.5]), np.array([0.0, 1.0, 0.5])  # two wildly wrong-looking rare classes
    loose = pr_sampler(shrink=0.0).update(None, p, r, np.array([1, 1, 40]))
    tight = pr_sampler(shrink=50.0).update(None, p, r, np.array([1, 1, 40]))
    assert loose[0] / loose[1] == pytest.approx(math.exp(4.0))  # one val record each: a factor e^4
    assert tight[0] / tight[1] == pytest.approx(math.exp(4.0 / 51))  # shrunk: 8% apart


def test_controller_floor_class_without_val_and_errors():
    s = pr_sampler(classes=4, min_share=0.05, rate=10.0, shrink=0.0)
    for _ in range(5):
        shares = s.update(None, np.array([1.0, 0.2, NAN, 0.5]), np.array([0.2, 1.0, NAN, 0.5]),
                          np.array([10, 10, 0, 10]))
    assert shares.sum() == pytest.approx(1.0)
    assert shares[1] == pytest.approx(0.05)  # over-predicted class pushed down to the floor
    assert shares[2] == pytest.approx(shares[3])  # no val records: it keeps its weight, like a class at P = R
    with pytest.raises(ValueError, match="precision, recall and support"):
        s.update(np.array([0.5, 0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="--dynamic_rule must be one of precision_recall, f1. Received: 'pid'"):
        sampling.DynamicSampler(3, "dynamic", rule="pid")
    with pytest.raises(ValueError, match="--dynamic_rate must be > 0"):
        sampling.DynamicSampler(3, "dynamic", rule="precision_recall", rate=0.0)


def test_controller_state_round_trip_resumes_in_place():
    p, r, n = np.array([0.9, 0.4, 0.6]), np.array([0.5, 0.8, 0.6]), np.array([30, 60, 90])
    a = pr_sampler(min_share=0.02)
    a.update(None, p, r, n)
    b = sampling.DynamicSampler.from_state(3, json.loads(json.dumps(a.state())))
    assert b.rule == "precision_recall" and b.log_weights == a.log_weights
    assert np.allclose(a.update(None, p, r, n), b.update(None, p, r, n))


def test_balanced_and_none_ignore_the_controller():
    p, r, n = np.array([0.9, 0.1]), np.array([0.1, 0.9]), np.array([100, 100])
    assert np.allclose(sampling.DynamicSampler(2, "balanced", rule="precision_recall").update(None, p, r, n), 0.5)
    none = sampling.DynamicSampler(2, "none", prior=[3, 1], rule="precision_recall")
    assert np.allclose(none.update(None, p, r, n), [0.75, 0.25])


def test_controller_moves_a_biased_classifier_to_where_precision_meets_recall():
    """A 1-D two-class toy: the decision threshold follows the log share ratio (the share
    is the class prior the head learns); the controller, fed val P and R, lands near the
    threshold where class 1's precision equals its recall, within 0.002 of the best F1 any
    threshold gives, from balanced's 0.51."""
    rng = np.random.default_rng(0)
    y = (rng.random(20000) < 0.1).astype(int)  # class 1 rare, as in val
    x = rng.normal(2.0 * y, 1.0)
    s = pr_sampler(classes=2, rate=2.0, shrink=50.0)

    def predict(shares):  # balanced-trained logit 2x - 2, shifted by the log prior ratio
        return (2 * x - 2 + np.log(shares[1] / shares[0]) > 0).astype(int)

    f1_start = per_class(confusion(y, predict(s.shares), 2))["f1"][1]
    for _ in range(30):
        pc = per_class(confusion(y, predict(s.shares), 2))
        s.update(pc["f1"], pc["precision"], pc["recall"], pc["support"])
    pc = per_class(confusion(y, predict(s.shares), 2))
    assert abs(pc["precision"][1] - pc["recall"][1]) < 0.03
    assert s.shares[1] < 0.5  # a rare class overlapping a common one: fewer predictions of it
    assert pc["f1"][1] > f1_start + 0.05
    best = max(per_class(confusion(y, (2 * x - 2 + t > 0).astype(int), 2))["f1"][1] for t in np.linspace(-5, 2, 200))
    assert f1_start == pytest.approx(0.5145, abs=1e-3)  # balanced: recall 0.83, precision 0.37
    assert pc["f1"][1] == pytest.approx(0.6067, abs=1e-3)  # P = R = 0.607
    assert best - pc["f1"][1] < 0.002  # the best threshold of a sweep: 0.6072


def test_standardisation_does_not_blow_up_constant_features():
    from training.model import standardisation

    sample = np.array([[0.0, 1.0, 10.0], [0.0, 3.0, 30.0]])  # variances 0, 1, 100
    mean, var = standardisation(sample, "global")
    assert np.allclose(mean, [0, 2, 20]) and np.allclose(var, 50.5)  # the mean variance of varying features
    _, var = standardisation(sample, "feature")
    assert np.allclose(var, [50.5, 50.5, 100])  # floored at the median variance of varying features
    _, var = standardisation(np.ones((4, 3)), "feature")
    assert np.allclose(var, 1.0)
    with pytest.raises(ValueError, match="--standardize must be one of global, feature. Received: 'z'"):
        standardisation(sample, "z")


def test_head_starts_at_zero_with_logistic_regression_l2():
    import keras

    from training.model import build_vector_model

    model = build_vector_model(3, 2, np.array([[0.0, 1.0], [2.0, 3.0]]), l2=20.0, train_records=100)
    kernel = model.get_layer("head").kernel
    assert not np.asarray(kernel).any()
    kernel.assign(np.ones((2, 3)))
    model(np.zeros((1, 2)))
    assert float(keras.ops.sum(model.losses)) == pytest.approx(20.0 / 200 * 6)  # l2 / (2 n) * ||W||^2
