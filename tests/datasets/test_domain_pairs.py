import numpy as np

from keras_transfer.datasets import domain_pairs
from tests.test_case import TestCase


class DomainPairsTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.xs = np.arange(10 * 3, dtype="float32").reshape(10, 3)
        cls.ys = np.arange(10) % 2
        cls.xt = -np.arange(23 * 3, dtype="float32").reshape(23, 3) - 1

    def test_longer_side_seen_once_shorter_repeated(self):
        ds = domain_pairs(self.xs, self.ys, self.xt, batch_size=4, target_batch_size=5, seed=1)
        batches = list(ds.as_numpy_iterator())
        self.assertEqual(len(batches), 5)  # max(ceil(10/4), ceil(23/5))
        self.assertEqual(int(ds.cardinality()), 5)
        targets = np.concatenate([b[0][1] for b in batches])
        sources = np.concatenate([b[0][0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        self.assertEqual(targets.shape, (25, 3))
        self.assertEqual(len(np.unique(targets[:23, 0])), 23)  # every target row once in the first pass
        self.assertEqual(sources.shape, (20, 3))
        self.assertEqual(set(np.unique(sources[:, 0]).tolist()), set(self.xs[:, 0].tolist()))
        # Labels travel with their source rows.
        np.testing.assert_array_equal(labels, (sources[:, 0] // 3).astype(int) % 2)

    def test_sample_weights(self):
        weights = np.linspace(0, 1, 10)
        (x_pair, y, w) = next(
            iter(domain_pairs(self.xs, self.ys, self.xt, batch_size=4, source_sample_weight=weights, shuffle=False))
        )
        np.testing.assert_allclose(w.numpy(), weights[:4].astype("float32"))
        self.assertEqual(x_pair[1].shape, (4, 3))

    def test_errors(self):
        self.assertRaisesValueError(
            ["same feature shape", "(3,)", "(4,)"], domain_pairs, self.xs, self.ys, np.ones((5, 4), "float32")
        )
        self.assertRaisesValueError(
            ["`target_x` must contain at least one example", "empty target_x"],
            domain_pairs,
            self.xs,
            self.ys,
            self.xt[:0],
        )
        self.assertRaisesValueError(
            ["`target_x` must hold the target inputs only", "unlabelled"],
            domain_pairs,
            self.xs,
            self.ys,
            (self.xt, np.zeros(23)),
        )
        self.assertRaisesValueError(
            ["`source_x` must contain at least one example"], domain_pairs, self.xs[:0], self.ys[:0], self.xt
        )
        self.assertRaisesValueError(["same length", "len(source_y)=9"], domain_pairs, self.xs, self.ys[:9], self.xt)
        self.assertRaisesValueError(
            ["`source_y`", "[0, 2)", "[0, 5]"], domain_pairs, self.xs, self.ys * 5, self.xt, num_classes=2
        )
        bad = self.xt.copy()
        bad[0, 0] = np.nan
        self.assertRaisesValueError(["`target_x` must contain only finite values"], domain_pairs, self.xs, self.ys, bad)
        self.assertRaisesValueError(
            ["`batch_size`", "Received: batch_size=0"], domain_pairs, self.xs, self.ys, self.xt, batch_size=0
        )
        self.assertRaisesValueError(
            ["`source_sample_weight`", "3 weights for 10"],
            domain_pairs,
            self.xs,
            self.ys,
            self.xt,
            source_sample_weight=[1, 2, 3],
        )
