import keras
import numpy as np

from keras_transfer.ops import disjoint_mean
from keras_transfer.ops import elect_sign
from keras_transfer.ops import linear_merge
from keras_transfer.ops import task_arithmetic
from keras_transfer.ops import ties_merge
from keras_transfer.ops import trim_to_density
from tests.test_case import TestCase


def numpy_ties(deltas, density, scale=1.0, weights=None):
    """TIES written from the paper's Algorithm 1, entry by entry with Python loops (no keras.ops)."""
    weights = np.ones(len(deltas)) if weights is None else np.asarray(weights, dtype="float64")
    trimmed = []
    for delta, weight in zip(deltas, weights):
        flat = np.asarray(delta, dtype="float64").ravel()
        keep = int(np.ceil(density * flat.size))
        order = sorted(range(flat.size), key=lambda i: -abs(flat[i]))[:keep]
        out = np.zeros_like(flat)
        out[order] = flat[order]
        trimmed.append(weight * out)
    merged = np.zeros_like(trimmed[0])
    for p in range(merged.size):
        column = [t[p] for t in trimmed]
        positive = sum(v for v in column if v > 0)
        negative = -sum(v for v in column if v < 0)
        if positive == negative:
            continue  # sum exactly 0: no elected sign, the entry stays 0
        sign = 1.0 if positive > negative else -1.0
        agree = [v for v in column if v * sign > 0]
        merged[p] = sum(agree) / len(agree)
    return scale * merged.reshape(np.shape(deltas[0]))


class TaskVectorOpsTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.deltas = [rng.normal(size=(5, 7)) for _ in range(3)]

    def test_linear_merge_and_task_arithmetic_match_numpy(self):
        d = self.deltas
        self.assertAllClose(linear_merge(d), (d[0] + d[1] + d[2]) / 3, atol=1e-12)
        self.assertAllClose(linear_merge(d, [0.2, 0.5, 0.3]), 0.2 * d[0] + 0.5 * d[1] + 0.3 * d[2], atol=1e-12)
        self.assertAllClose(task_arithmetic(d, scale=0.4), 0.4 * (d[0] + d[1] + d[2]), atol=1e-12)
        self.assertAllClose(task_arithmetic(d, 2.0, [1, 0, -1]), 2.0 * (d[0] - d[2]), atol=1e-12)
        # float64 in, float64 out; float32 in, float32 out.
        self.assertEqual(keras.backend.standardize_dtype(linear_merge(d).dtype), "float64")
        self.assertEqual(
            keras.backend.standardize_dtype(linear_merge([x.astype("float32") for x in d]).dtype), "float32"
        )

    def test_ties_hand_worked_example(self):
        # Three tasks, six entries, density 1/2 keeps 3 entries per task:
        #   t1 = [ 4, -1,  0.5, 3, -2,  0.1] -> [ 4, 0, 0, 3, -2, 0]
        #   t2 = [-1,  5, -0.2, 2,  1, -3  ] -> [ 0, 5, 0, 2,  0, -3]
        #   t3 = [-2, -4,  0.3, 0.1, 6, 0.2] -> [-2, -4, 0, 0, 6, 0]
        # sums [2, 1, 0, 5, 4, -3] -> signs [+, +, 0, +, +, -]
        # disjoint means: [4, 5, 0, (3 + 2) / 2, 6, -3]
        t1 = np.array([4, -1, 0.5, 3, -2, 0.1])
        t2 = np.array([-1, 5, -0.2, 2, 1, -3])
        t3 = np.array([-2, -4, 0.3, 0.1, 6, 0.2])
        self.assertAllClose(trim_to_density(t1, 0.5), [4, 0, 0, 3, -2, 0], atol=0)
        trimmed = [trim_to_density(t, 0.5) for t in (t1, t2, t3)]
        self.assertAllClose(elect_sign(trimmed), [1, 1, 0, 1, 1, -1], atol=0)
        expected = [4, 5, 0, 2.5, 6, -3]
        self.assertAllClose(ties_merge([t1, t2, t3], density=0.5), expected, atol=1e-12)
        self.assertAllClose(ties_merge([t1, t2, t3], density=0.5, scale=0.5), np.multiply(expected, 0.5), atol=1e-12)
        # Only the entries agreeing with the sign are averaged (the -1 and -2 drop out).
        self.assertAllClose(disjoint_mean([t1, t2], [1] * 6), [4, 5, 0.5, 2.5, 1, 0.1], atol=1e-12)

    def test_ties_matches_the_loop_reference(self):
        for density in (0.1, 0.35, 1.0):
            for weights in (None, [0.5, 1.0, 2.0]):
                with self.subTest(density=density, weights=weights):
                    actual = ties_merge(self.deltas, density=density, scale=0.7, weights=weights)
                    expected = numpy_ties(self.deltas, density, 0.7, weights)
                    self.assertAllClose(actual, expected, atol=1e-12)
        # Density 1 keeps everything; with agreeing signs TIES is the plain mean.
        same_sign = [np.abs(d) for d in self.deltas]
        self.assertAllClose(ties_merge(same_sign, density=1.0), np.mean(same_sign, axis=0), atol=1e-12)
        # Trimming keeps exactly ceil(density * size) entries, the largest ones.
        kept = keras.ops.convert_to_numpy(trim_to_density(self.deltas[0], 0.2))
        self.assertEqual(np.count_nonzero(kept), 7)
        self.assertGreaterEqual(np.abs(kept[kept != 0]).min(), np.sort(np.abs(self.deltas[0]).ravel())[-7])

    def test_bad_arguments(self):
        d = self.deltas
        self.assertRaisesValueError(["`deltas` must be a non-empty list", "deltas=[]"], linear_merge, [])
        self.assertRaisesValueError(["one shape", "(5, 7)", "(7, 5)"], ties_merge, [d[0], d[1].T])
        self.assertRaisesValueError(
            ["`weights` must hold one number per task (3)", "weights=[1.0]"], linear_merge, d, [1.0]
        )
        self.assertRaisesValueError(["`weights` must be finite"], task_arithmetic, d, 1.0, [1, np.nan, 1])
        for density in (0, 1.5, -0.1, "0.2"):
            self.assertRaisesValueError(
                ["`density` must be a number in (0, 1]", f"density={density!r}"], ties_merge, d, density
            )
        self.assertRaisesValueError(["`scale` must be", "scale=inf"], task_arithmetic, d, float("inf"))
