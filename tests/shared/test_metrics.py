"""shared.metrics against sklearn, hand-computed cases and known orderings."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from shared.metrics import (
    accuracy,
    brier_score,
    calibrated_scores,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    ood_detection_scores,
    prediction_rejection_ratio,
    rejection_curve,
)


def test_prr_oracle_random_perverse():
    rng = np.random.default_rng(0)
    n = 20_000
    err = (rng.random(n) < 0.2).astype(float)
    assert prediction_rejection_ratio(err + 0.1 * rng.random(n), err) == pytest.approx(1.0)
    assert abs(prediction_rejection_ratio(rng.random(n), err)) < 0.05
    assert prediction_rejection_ratio(-err, err) == pytest.approx(-1.0, abs=1e-3)
    cont = rng.random(n) * 100
    assert prediction_rejection_ratio(cont, cont) == pytest.approx(1.0)
    assert 0.3 < prediction_rejection_ratio(cont + rng.normal(0, 20, n), cont) < 0.95


def test_prr_ties_are_expected_value_and_deterministic():
    err = np.array([1.0, 0.0, 1.0, 0.0])
    const = np.zeros(4)
    assert prediction_rejection_ratio(const, err) == pytest.approx(0.0, abs=1e-12)
    c = rejection_curve(const, err)
    np.testing.assert_allclose(c["uncertainty"], c["random"])
    assert np.isnan(prediction_rejection_ratio(np.arange(4.0), np.zeros(4)))


def test_rejection_curve_small_case_by_hand():
    u = np.array([0.9, 0.1, 0.5])
    e = np.array([0.0, 1.0, 1.0])
    c = rejection_curve(u, e)
    # order: 0.9 (err 0), 0.5 (err 1), 0.1 (err 1): remaining error / 3
    np.testing.assert_allclose(c["uncertainty"], [2 / 3, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(c["oracle"], [2 / 3, 1 / 3, 0.0, 0.0])


def test_ood_scores_match_sklearn():
    rng = np.random.default_rng(1)
    i, o = rng.normal(0, 1, 500), rng.normal(1, 1, 300)
    out = ood_detection_scores(torch.tensor(i), o)
    y = np.r_[np.zeros(500), np.ones(300)]
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, np.r_[i, o]))
    assert out["pr_auc"] == pytest.approx(average_precision_score(y, np.r_[i, o]))
    # fpr at 95% tpr: fraction of ID above the 5% quantile threshold of OOD
    thr = np.sort(o)[int(np.floor(0.05 * 300))]
    assert out["fpr_at_95_tpr"] == pytest.approx((i >= thr).mean(), abs=2 / 500)
    perfect = ood_detection_scores([0.0, 0.1], [0.5, 0.9])
    assert perfect["roc_auc"] == 1.0 and perfect["fpr_at_95_tpr"] == 0.0


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.0, 1.0]])
    labels = np.array([0, 1, 1, 1])
    # bins (n=10): 0.9→bin 9 (correct), 0.6→bin 6 (wrong), 0.7→bin 7 (correct), 1.0→bin 9 (correct)
    # bin 9: conf (0.9+1.0)/2, acc 1 → |1-0.95|*2/4; bin 6: |0-0.6|/4; bin 7: |1-0.7|/4
    expected = 0.05 * 2 / 4 + 0.6 / 4 + 0.3 / 4
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)


def test_nll_brier_accuracy():
    probs = np.array([[0.5, 0.5], [0.2, 0.8]])
    labels = np.array([0, 1])
    assert negative_log_likelihood(probs, labels) == pytest.approx(-(np.log(0.5) + np.log(0.8)) / 2)
    assert brier_score(probs, labels) == pytest.approx((0.25 + 0.25 + 0.04 + 0.04) / 2)
    assert accuracy(probs, labels) == 1.0  # argmax tie → class 0, which is the label
    assert accuracy(probs, np.array([1, 1])) == 0.5
    with pytest.raises(ValueError, match="labels"):
        accuracy(probs, np.array([0, 2]))


def test_fit_temperature_recovers_generating_temperature():
    torch.manual_seed(0)
    n, k, true_t = 20_000, 5, 2.5
    logits = torch.randn(n, k) * 3
    labels = torch.distributions.Categorical(logits=logits / true_t).sample()
    assert fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.05)
    res = calibrated_scores(logits[:10_000], labels[:10_000], logits[10_000:], labels[10_000:])
    raw_nll = negative_log_likelihood(torch.softmax(logits[10_000:], -1), labels[10_000:])
    assert res["calibrated_nll"] < raw_nll
    assert res["calibrated_ece"] < expected_calibration_error(torch.softmax(logits[10_000:], -1), labels[10_000:])
