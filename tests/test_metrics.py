"""Tests for the array metrics of autoencoder_toolkit.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from autoencoder_toolkit.metrics import (
    ActiveUnits,
    active_units,
    active_units_sampled,
    classification_accuracy_split,
    latent_classification_accuracy,
)


def plus_minus(a: float, n: int = 8) -> np.ndarray:
    """``n`` values alternating ``+a, -a``: mean 0, population variance exactly ``a**2``."""
    return a * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


# ---------------------------------------------------------------------------
# active_units
# ---------------------------------------------------------------------------


def test_active_units_known_variances() -> None:
    # Dyadic values make every variance exact in floating point.
    means = np.stack(
        [
            np.full(8, 3.0),  # constant: variance 0, a collapsed unit
            plus_minus(0.125),  # variance 1/64 = 0.015625
            plus_minus(0.0625),  # variance 1/256 = 0.00390625
            plus_minus(2.0) + 5.0,  # variance 4 (shift does not matter)
        ],
        axis=1,
    )
    res = active_units(means)
    assert isinstance(res, ActiveUnits)
    np.testing.assert_array_equal(res.variances, [0.0, 1 / 64, 1 / 256, 4.0])
    assert res.count == 2 and res.threshold == 0.01
    # The comparison is ">=": a variance equal to the threshold counts as active.
    assert active_units(means, threshold=1 / 64).count == 2
    assert active_units(means, threshold=np.nextafter(1 / 64, 1.0)).count == 1
    assert active_units(means, threshold=1 / 256).count == 3
    assert active_units(means, threshold=0.0).count == 4


def test_active_units_population_variance() -> None:
    # Two inputs 0 and 1: population variance 0.25 (the sample variance would be 0.5).
    res = active_units(np.array([[0.0], [1.0]]), threshold=0.3)
    assert res.variances.tolist() == [0.25]
    assert res.count == 0


def test_active_units_threshold_just_above_and_below() -> None:
    threshold = 0.01
    above = plus_minus(0.1 * (1 + 1e-6), 1000)
    below = plus_minus(0.1 * (1 - 1e-6), 1000)
    res = active_units(np.stack([above, below], axis=1), threshold)
    assert res.variances[0] > threshold > res.variances[1]
    assert res.count == 1


def test_active_units_torch_and_float32() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    means = rng.normal(size=(200, 5)) * np.array([0.0, 0.05, 0.5, 1.0, 2.0])
    expected = active_units(means)
    got = active_units(torch.tensor(means, dtype=torch.float32, requires_grad=True))
    assert got.count == expected.count == 3  # variances ~0, 0.0025, 0.25, 1, 4
    np.testing.assert_allclose(got.variances, expected.variances, rtol=1e-5)


def test_active_units_errors() -> None:
    message = r"means: expected an array of shape \(N, L\), got shape \(5,\)"
    with pytest.raises(ValueError, match=message):
        active_units(np.zeros(5))
    with pytest.raises(ValueError, match="means: expected at least 2 inputs"):
        active_units(np.zeros((1, 3)))
    bad = np.zeros((4, 3))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"means: .*1 non-finite.*\(1, 2\)"):
        active_units(bad)
    with pytest.raises(ValueError, match="threshold: expected a finite number >= 0"):
        active_units(np.zeros((4, 3)), threshold=-0.1)


# ---------------------------------------------------------------------------
# active_units_sampled
# ---------------------------------------------------------------------------


def test_active_units_sampled_hand_built() -> None:
    # S = 2 draws, N = 2 inputs, L = 4 dimensions.
    z = np.zeros((2, 2, 4))
    # dim 0: per-input means +2 and -2 -> variance 4 (active).
    z[:, 0, 0], z[:, 1, 0] = [1.0, 3.0], [-1.0, -3.0]
    # dim 1: large noise that averages out per input: means 0 and 0 -> variance 0.
    z[:, 0, 1], z[:, 1, 1] = [5.0, -5.0], [7.0, -7.0]
    # dim 2: means +0.25 and -0.25 -> variance 0.0625 >= 0.05 (active).
    z[:, 0, 2], z[:, 1, 2] = [0.0, 0.5], [-0.5, 0.0]
    # dim 3: means +0.125 and -0.125 -> variance 0.015625 < 0.05 (inactive).
    z[:, 0, 3], z[:, 1, 3] = [0.125, 0.125], [-0.25, 0.0]
    res = active_units_sampled(z)
    np.testing.assert_array_equal(res.variances, [4.0, 0.0, 0.0625, 0.015625])
    assert res.count == 2 and res.threshold == 0.05
    assert active_units_sampled(z, threshold=0.015625).count == 3


def test_active_units_sampled_matches_means_for_many_draws() -> None:
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(300, 3)) * np.array([0.0, 0.3, 1.0])
    draws = mu[None] + 0.5 * rng.normal(size=(400, 300, 3))
    sampled = active_units_sampled(draws, threshold=0.01)
    exact = active_units(mu, threshold=0.01)
    assert sampled.count == exact.count == 2
    # Averaging S draws leaves noise variance 0.25 / S = 0.000625 per dimension (plus a
    # cross term of order 2 * sd(mu) * 0.025 / sqrt(N) < 3e-3).
    np.testing.assert_allclose(sampled.variances, exact.variances + 0.25 / 400, atol=3e-3)


def test_active_units_sampled_errors() -> None:
    with pytest.raises(ValueError, match=r"sample_codes: expected an array of shape \(S, N, L\)"):
        active_units_sampled(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="sample_codes: expected at least 2 inputs"):
        active_units_sampled(np.zeros((5, 1, 3)))
    with pytest.raises(ValueError, match="sample_codes: .*non-finite"):
        active_units_sampled(np.full((2, 3, 1), np.inf))


# ---------------------------------------------------------------------------
# Classification accuracy
# ---------------------------------------------------------------------------


def separable_codes(n_per_class: int = 30, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    codes = 10.0 * np.eye(n_classes)[labels] + 0.1 * rng.normal(size=(labels.size, n_classes))
    return codes, labels


def test_separable_codes_give_accuracy_one() -> None:
    codes, labels = separable_codes()
    assert latent_classification_accuracy(codes, labels) == 1.0
    assert latent_classification_accuracy(codes, labels, test_fraction=0.5, seed=3) == 1.0


def test_split_function_on_separable_codes() -> None:
    codes, labels = separable_codes()
    acc = classification_accuracy_split(codes[::2], labels[::2], codes[1::2], labels[1::2])
    assert acc == 1.0
    # Flipping the test labels of one class out of four costs exactly a quarter.
    flipped = labels[1::2].copy()
    flipped[flipped == 0] = 1
    acc = classification_accuracy_split(codes[::2], labels[::2], codes[1::2], flipped)
    assert acc == pytest.approx(0.75)


def test_random_codes_near_chance() -> None:
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(2000, 8))
    labels = rng.integers(0, 10, size=2000)
    acc = latent_classification_accuracy(codes, labels)
    assert 0.03 <= acc <= 0.2  # chance is 0.1


def test_accuracy_deterministic_and_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, size=150)
    codes = labels[:, None] + rng.normal(size=(150, 2))  # overlapping classes
    a = latent_classification_accuracy(codes, labels, seed=1)
    b = latent_classification_accuracy(codes, labels, seed=1)
    c = latent_classification_accuracy(torch.tensor(codes), torch.tensor(labels), seed=1)
    assert a == b == c
    assert 0.4 < a < 1.0


def test_accuracy_errors() -> None:
    codes, labels = separable_codes()
    with pytest.raises(ValueError, match="labels: expected 120 labels .* got 119"):
        latent_classification_accuracy(codes, labels[:-1])
    with pytest.raises(ValueError, match="labels: expected at least 2 classes, got 1"):
        latent_classification_accuracy(codes, np.zeros(120, dtype=int))
    bad = codes.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"codes: .*1 non-finite.*\(5, 1\)"):
        latent_classification_accuracy(bad, labels)
    with pytest.raises(ValueError, match=r"test_fraction: expected a number in \(0, 1\)"):
        latent_classification_accuracy(codes, labels, test_fraction=0.0)
    with pytest.raises(ValueError, match="train_labels: expected at least 2 classes"):
        classification_accuracy_split(codes, np.ones(120), codes, labels)
    with pytest.raises(ValueError, match="test_codes: expected 4 features"):
        classification_accuracy_split(codes, labels, codes[:, :3], labels)
    with pytest.raises(ValueError, match="test_labels: expected 120 labels"):
        classification_accuracy_split(codes, labels, codes, labels[:10])
    with pytest.raises(ValueError, match="test_codes: expected at least one test sample"):
        classification_accuracy_split(codes, labels, codes[:0], labels[:0])
    with pytest.raises(ValueError, match="train_labels: expected finite labels"):
        classification_accuracy_split(codes, np.full(120, np.nan), codes, labels)
