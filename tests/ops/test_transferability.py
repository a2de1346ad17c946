"""LogME, LEEP, NCE and H-score against NumPy float64 references written from the papers' formulas."""

import math

import numpy as np

from keras_transfer.ops import h_score
from keras_transfer.ops import leep
from keras_transfer.ops import log_me
from keras_transfer.ops import nce
from tests.test_case import TestCase


def _class_features(n, d, num_classes, seed, spread=1.0):
    """Labels with every class present and features = a random mean per class + Gaussian noise."""
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, n - num_classes)])
    means = rng.normal(size=(num_classes, d)) * spread
    return means[labels] + rng.normal(size=(n, d)), labels


def _naive_evidence(features, y, alpha, beta):
    """The paper's log evidence with an explicit A = alpha I + beta F^T F."""
    n, d = features.shape
    a = alpha * np.eye(d) + beta * features.T @ features
    m = beta * np.linalg.inv(a) @ features.T @ y
    return (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * np.sum((features @ m - y) ** 2)
        - alpha / 2 * (m @ m)
        - np.linalg.slogdet(a)[1] / 2
    )


def _noise_free_evidence(features, y):
    """max over alpha of log N(y; 0, F F^T / alpha): the evidence's limit at beta = inf (needs F F^T invertible)."""
    n = len(y)
    gram = features @ features.T
    alpha = n / (y @ np.linalg.inv(gram) @ y)
    return -n / 2 * math.log(2 * math.pi) - np.linalg.slogdet(gram / alpha)[1] / 2 - n / 2


def reference_log_me(features, labels, tolerance=1e-10, max_iterations=5000):
    """You et al. (2021), Algorithm 1 in its naive form: explicit A^-1, iterated until alpha, beta stop moving.

    Returns `(score, diverged)`. A class whose iteration heads for beta = inf instead (the
    features interpolate its target, n <= D) gets the evidence's limit there, which the
    iterates must have approached.
    """
    n, d = features.shape
    evidences, diverged = [], False
    for c in range(labels.max() + 1):
        y = (labels == c).astype("float64")
        alpha, beta = 1.0, 1.0
        for _ in range(max_iterations):
            a_inv = np.linalg.inv(alpha * np.eye(d) + beta * features.T @ features)
            m = beta * a_inv @ features.T @ y
            gamma = np.trace(beta * features.T @ features @ a_inv)  # sum_i beta s_i / (alpha + beta s_i)
            new_alpha = gamma / (m @ m)
            new_beta = (n - gamma) / np.sum((features @ m - y) ** 2)
            done = abs(new_alpha / alpha - 1) < tolerance and abs(new_beta / beta - 1) < tolerance
            alpha, beta = new_alpha, new_beta
            if done:
                evidences.append(_naive_evidence(features, y, alpha, beta) / n)
                break
            if beta > 1e7:  # explicit inverses lose precision beyond: take the limit
                assert n <= d, "beta diverged although the features cannot interpolate the target"
                limit = _noise_free_evidence(features, y)
                reached = _naive_evidence(features, y, alpha, beta)
                assert abs(reached - limit) < 1e-4 * n, (reached, limit)
                evidences.append(limit / n)
                diverged = True
                break
        else:
            raise AssertionError("the reference iteration did not converge: pick other test data")
    return float(np.mean(evidences)), diverged


def reference_leep(theta, labels):
    """Nguyen et al. (2020), eqs. (1)-(3), one loop per sum."""
    n, num_source = theta.shape
    num_target = labels.max() + 1
    joint = np.zeros((num_target, num_source))
    for i in range(n):
        for z in range(num_source):
            joint[labels[i], z] += theta[i, z] / n
    total = 0.0
    for i in range(n):
        eep = sum(joint[labels[i], z] / joint[:, z].sum() * theta[i, z] for z in range(num_source))
        total += math.log(eep)
    return total / n


def reference_nce(source, target):
    """Tran et al. (2019): -H(Y | Z) = sum_{y,z} P(y, z) log P(y | z), from counts."""
    n = len(source)
    pairs = {}
    for z, y in zip(source.tolist(), target.tolist()):
        pairs[(y, z)] = pairs.get((y, z), 0) + 1
    source_counts = {z: int(np.sum(source == z)) for z in set(source.tolist())}
    return sum(count / n * math.log(count / source_counts[z]) for (y, z), count in pairs.items())


def reference_h_score(features, labels):
    """Bao et al. (2019): tr(cov(f)^-1 cov(E[f | y])) with NumPy's covariance and an explicit inverse."""
    class_means = np.stack([features[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    conditional = class_means[labels]
    cov_f = np.atleast_2d(np.cov(features, rowvar=False, bias=True))
    cov_g = np.atleast_2d(np.cov(conditional, rowvar=False, bias=True))
    return float(np.trace(np.linalg.inv(cov_f) @ cov_g))


class LogMeTest(TestCase):
    def test_matches_the_naive_algorithm(self):
        # n > D (eigendecomposition of F^T F), n < D (compact SVD through F F^T), n == D.
        for n, d, seed in ((80, 6, 0), (24, 50, 0), (30, 30, 2)):
            features, labels = _class_features(n, d, 3, seed, spread=0.3)
            with self.subTest(n=n, d=d):
                expected, diverged = reference_log_me(features, labels)
                self.assertFalse(diverged)
                self.assertAllClose(log_me(features, labels), expected, atol=1e-6)

    def test_interpolating_features_take_the_noise_free_limit(self):
        # n < D: the features can fit every one-hot target exactly and the evidence rises towards beta = inf.
        features, labels = _class_features(10, 30, 3, 1, spread=3.0)
        expected, diverged = reference_log_me(features, labels)
        self.assertTrue(diverged)
        self.assertAllClose(log_me(features, labels), expected, atol=1e-6)

    def test_rank_deficient_features_match_the_naive_algorithm(self):
        features, labels = _class_features(50, 4, 3, 3)
        features = np.c_[features, features[:, :2], np.zeros(50)]  # duplicate and constant-zero columns
        expected, diverged = reference_log_me(features, labels)
        self.assertFalse(diverged)
        self.assertAllClose(log_me(features, labels), expected, atol=1e-6)

    def test_features_orthogonal_to_every_target_give_the_zero_weight_evidence(self):
        # Columns summing to 0 within each class: F^T y_c = 0, the evidence peaks at alpha = inf (w = 0),
        # where y_c ~ N(0, 1 / beta) with beta = n / ||y_c||^2, i.e. L / n = 1/2 log(n / n_c) - 1/2 log 2 pi - 1/2.
        rng = np.random.default_rng(4)
        labels = np.repeat([0, 1, 2], [10, 12, 18])
        features = rng.normal(size=(40, 5))
        for c in range(3):
            features[labels == c] -= features[labels == c].mean(axis=0)
        counts = np.bincount(labels)
        expected = np.mean(0.5 * np.log(40 / counts) - 0.5 * np.log(2 * np.pi) - 0.5)
        self.assertAllClose(log_me(features, labels), expected, atol=1e-9)

    def test_invariant_to_label_permutation_and_example_order(self):
        features, labels = _class_features(60, 5, 4, 5)
        score = log_me(features, labels)
        permutation = np.array([2, 0, 3, 1])
        self.assertAllClose(log_me(features, permutation[labels]), score, atol=1e-10)
        order = np.random.default_rng(0).permutation(60)
        self.assertAllClose(log_me(features[order], labels[order]), score, atol=1e-10)

    def test_separable_features_score_higher_than_noise(self):
        separable, labels = _class_features(90, 10, 3, 6, spread=3.0)
        noise = np.random.default_rng(7).normal(size=(90, 10))
        self.assertGreater(log_me(separable, labels), log_me(noise, labels) + 0.1)

    def test_accepts_float32_and_column_labels(self):
        features, labels = _class_features(40, 3, 2, 8)
        self.assertAllClose(
            log_me(features.astype("float32"), labels[:, None].astype("float32")),
            log_me(features.astype("float32").astype("float64"), labels),
            atol=1e-12,
        )

    def test_all_zero_features(self):
        zeros = np.zeros((4, 3))
        self.assertRaisesValueError(["`features` must not be all zeros", "dead ReLU"], log_me, zeros, [0, 1, 0, 1])


class LeepTest(TestCase):
    def test_hand_computed_cases(self):
        # Source classes that coincide with the target classes: P(y | z) is the identity, LEEP = log 1.
        identity = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        self.assertAllClose(leep(identity, [0, 0, 1, 1]), 0.0, atol=1e-12)
        # A uniform source model: P(y | z) = P(y) = (3/4, 1/4) for both z.
        uniform = np.full((4, 2), 0.5)
        expected = (3 * math.log(0.75) + math.log(0.25)) / 4
        self.assertAllClose(leep(uniform, [0, 0, 0, 1]), expected, atol=1e-12)

    def test_matches_the_formula(self):
        rng = np.random.default_rng(0)
        logits = rng.normal(size=(30, 5)) * 2
        theta = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        labels = np.concatenate([np.arange(3), rng.integers(0, 3, 27)])
        self.assertAllClose(leep(theta, labels), reference_leep(theta, labels), atol=1e-12)

    def test_source_class_without_mass(self):
        theta = np.array([[0.7, 0.3, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0]])
        self.assertAllClose(leep(theta, [0, 1, 1]), reference_leep(theta[:, :2], np.array([0, 1, 1])), atol=1e-12)

    def test_probability_errors(self):
        labels = [0, 1]
        self.assertRaisesValueError(
            ["`source_probabilities` must have rows that sum to 1", "row 1 sums to 0.5", "softmax"],
            leep,
            np.array([[0.5, 0.5], [0.25, 0.25]]),
            labels,
        )
        self.assertRaisesValueError(
            ["`source_probabilities` must hold probabilities in [0, 1]", "softmax"],
            leep,
            np.array([[2.0, -1.0], [0.5, 0.5]]),
            labels,
        )
        self.assertRaisesValueError(
            ["`source_probabilities` must contain only finite values", "1 NaN"],
            leep,
            np.array([[np.nan, 0.5], [0.5, 0.5]]),
            labels,
        )
        self.assertRaisesValueError(
            ["`source_probabilities` must be a 2-D array", "shape (2,)"], leep, np.array([0.5, 0.5]), labels
        )
        self.assertRaisesValueError(
            ["`labels` must have one entry per row of `source_probabilities`", "length 3", "2 rows"],
            leep,
            np.full((2, 2), 0.5),
            [0, 1, 1],
        )


class NceTest(TestCase):
    def test_hand_computed_cases(self):
        # Z = 0 holds one example of each target class (entropy log 2), Z = 1 only class 1 (entropy 0).
        self.assertAllClose(nce([0, 0, 1, 1], [0, 1, 1, 1]), -0.5 * math.log(2), atol=1e-12)
        # Source ids need not be 0..k-1.
        self.assertAllClose(nce([7, 7, 100, 100], [0, 1, 1, 1]), -0.5 * math.log(2), atol=1e-12)
        # Source labels that determine the target: 0. Independent ones: -H(Y) = -log K.
        self.assertAllClose(nce([3, 3, 5, 5, 9], [0, 0, 1, 1, 2]), 0.0, atol=1e-12)
        self.assertAllClose(nce([0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2]), -math.log(3), atol=1e-12)

    def test_matches_the_formula(self):
        rng = np.random.default_rng(1)
        source = rng.integers(0, 6, 50)
        target = np.concatenate([np.arange(4), rng.integers(0, 4, 46)])
        self.assertAllClose(nce(source, target), reference_nce(source, target), atol=1e-12)

    def test_label_errors(self):
        self.assertRaisesValueError(
            ["`target_labels` must have one entry per row of `source_labels`", "length 2", "3 rows"],
            nce,
            [0, 1, 1],
            [0, 1],
        )
        self.assertRaisesValueError(["`source_labels` must hold at least one example"], nce, [], [])
        self.assertRaisesValueError(
            ["`source_labels` must hold non-negative class ids", "minimum -1"], nce, [-1, 0], [0, 1]
        )
        self.assertRaisesValueError(["`target_labels` must hold at least 2 classes"], nce, [0, 1], [1, 1])


class HScoreTest(TestCase):
    def test_matches_the_formula(self):
        for n, d, k, seed in ((60, 4, 3, 0), (200, 12, 5, 1)):
            features, labels = _class_features(n, d, k, seed)
            with self.subTest(n=n, d=d):
                self.assertAllClose(h_score(features, labels), reference_h_score(features, labels), atol=1e-9)

    def test_hand_computed_case(self):
        # One feature: between-class variance 0.25 over total variance 1.25.
        self.assertAllClose(h_score(np.array([[0.0], [2.0], [1.0], [3.0]]), [0, 0, 1, 1]), 0.2, atol=1e-12)

    def test_invariant_to_invertible_maps_and_bounded(self):
        features, labels = _class_features(80, 5, 4, 2)
        score = h_score(features, labels)
        mixing = np.random.default_rng(3).normal(size=(5, 5))
        self.assertAllClose(h_score(features @ mixing + 7.0, labels), score, atol=1e-8)
        self.assertGreater(score, 0.0)
        self.assertLessEqual(score, 3.0 + 1e-9)  # at most min(K - 1, D)

    def test_pseudo_inverse_ignores_redundant_columns(self):
        features, labels = _class_features(80, 5, 4, 4)
        redundant = np.c_[features, features[:, 0] - 2 * features[:, 1], np.ones(80)]
        self.assertAllClose(h_score(redundant, labels), h_score(features, labels), atol=1e-8)

    def test_saturates_at_num_classes_minus_one_with_fewer_examples_than_features(self):
        # n <= D: the features interpolate any class indicator, so even noise scores K - 1.
        noise = np.random.default_rng(5).normal(size=(12, 20))
        self.assertAllClose(h_score(noise, np.arange(12) % 3), 2.0, atol=1e-8)

    def test_rcond_errors(self):
        for bad in (-0.1, 1.0, "1e-3", True):
            self.assertRaisesValueError("`rcond` must be a number in [0, 1)", h_score, np.eye(4), [0, 1, 0, 1], bad)


class SharedInputErrorsTest(TestCase):
    """The errors every feature score (LogME, H-score) and LEEP raise on bad labels and arrays."""

    SCORES = (("log_me", log_me), ("h_score", h_score), ("leep", leep))

    def _features(self, n, score_name):
        return np.full((n, 2), 0.5) if score_name == "leep" else np.random.default_rng(0).normal(size=(n, 2))

    def test_label_errors(self):
        for score_name, score in self.SCORES:
            with self.subTest(score_name):
                features = self._features(4, score_name)
                self.assertRaisesValueError(
                    ["`labels` must hold at least 2 classes", "single class 1"], score, features, [1, 1, 1, 1]
                )
                self.assertRaisesValueError(
                    ["`labels` must have at least as many examples as classes", "4 examples for 10 classes"],
                    score,
                    features,
                    [0, 9, 1, 2],
                )
                self.assertRaisesValueError(
                    ["`labels` must contain every class id in [0, 3]", "classes [2]", "np.unique"],
                    score,
                    features,
                    [0, 1, 3, 3],
                )
                self.assertRaisesValueError(
                    ["`labels` must have one entry per row", "length 3 for 4 rows"], score, features, [0, 1, 1]
                )
                self.assertRaisesValueError(
                    ["`labels` must be a 1-D array", "np.argmax"], score, features, np.eye(4)[[0, 1, 0, 1]]
                )
                self.assertRaisesValueError(
                    ["`labels` must hold integer class ids", "0.5"], score, features, [0.5, 1.0, 0.0, 1.0]
                )

    def test_array_errors(self):
        for score_name, score in self.SCORES:
            name = "source_probabilities" if score_name == "leep" else "features"
            with self.subTest(score_name):
                self.assertRaisesValueError([f"`{name}` must hold at least one example"], score, np.zeros((0, 2)), [])
                self.assertRaisesValueError(
                    [f"`{name}` must be a 2-D array", "shape (2, 2, 1)", "reshape"], score, np.ones((2, 2, 1)), [0, 1]
                )
                bad = self._features(4, score_name)
                bad[1, 0] = np.inf
                self.assertRaisesValueError(
                    [f"`{name}` must contain only finite values", "1 NaN or infinite"], score, bad, [0, 1, 0, 1]
                )
                self.assertRaisesValueError([f"`{name}` must be a numeric array"], score, [["a", "b"]] * 2, [0, 1])
