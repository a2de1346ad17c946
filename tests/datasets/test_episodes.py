import numpy as np
import tensorflow as tf

from keras_transfer.datasets import episode_dataset
from keras_transfer.datasets import sample_episodes
from tests.test_case import TestCase


def toy_data(per_class=(6, 6, 6, 6), feature=3):
    # x encodes (class, index) so provenance is checkable: x[..., 0] = class, x[..., 1] = index.
    xs, ys = [], []
    for c, n in enumerate(per_class):
        for i in range(n):
            xs.append(np.full((feature,), 0.0) + np.array([c, i, 0.0][:feature]))
            ys.append(c)
    return np.asarray(xs, "float32"), np.asarray(ys, "int64")


class EpisodesTest(TestCase):
    def test_structure_disjoint_and_relabelled(self):
        x, y = toy_data()
        (sx, sy, qx), qy = sample_episodes((x, y), 20, n_way=3, k_shot=2, q_queries=3, seed=0)
        self.assertEqual(sx.shape, (20, 6, 3))
        self.assertEqual(sy.shape, (20, 6))
        self.assertEqual(qx.shape, (20, 9, 3))
        self.assertEqual(qy.shape, (20, 9))
        for e in range(20):
            self.assertEqual(sorted(np.bincount(sy[e]).tolist()), [2, 2, 2])
            self.assertEqual(sorted(np.bincount(qy[e]).tolist()), [3, 3, 3])
            # One original class per episode label, consistent between support and query.
            mapping = {}
            for xs, ys in ((sx[e], sy[e]), (qx[e], qy[e])):
                for row, label in zip(xs, ys):
                    mapping.setdefault(int(label), set()).add(int(row[0]))
            self.assertTrue(all(len(v) == 1 for v in mapping.values()))
            support_ids = {(int(r[0]), int(r[1])) for r in sx[e]}
            query_ids = {(int(r[0]), int(r[1])) for r in qx[e]}
            self.assertFalse(support_ids & query_ids)
            self.assertEqual(len(support_ids) + len(query_ids), 15)

    def test_seeded_and_class_split(self):
        x, y = toy_data()
        a = sample_episodes((x, y), 5, 2, 1, 2, classes=[2, 3], seed=4)
        b = sample_episodes((x, y), 5, 2, 1, 2, classes=[2, 3], seed=4)
        c = sample_episodes((x, y), 5, 2, 1, 2, classes=[2, 3], seed=5)
        self.assertAllClose(a[0][0], b[0][0], atol=0)
        self.assertNotAllClose(a[0][0], c[0][0])
        self.assertEqual(set(np.unique(a[0][0][..., 0]).tolist()), {2.0, 3.0})

    def test_tf_data_input_and_episode_dataset(self):
        x, y = toy_data()
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
        (sx, sy, qx), qy = sample_episodes(ds, 3, 2, 2, 2, seed=0)
        self.assertEqual(sx.shape, (3, 4, 3))
        unbatched = tf.data.Dataset.from_tensor_slices((x, y))  # like tfds as_supervised
        self.assertAllClose(sample_episodes(unbatched, 3, 2, 2, 2, seed=0)[0][0], sx, atol=0)
        batch = next(iter(episode_dataset((x, y), 2, 2, 2, episodes_per_batch=4, seed=0)))
        (bsx, bsy, bqx), bqy = batch
        self.assertEqual(tuple(bsx.shape), (4, 4, 3))
        self.assertEqual(tuple(bqy.shape), (4, 4))

    def test_errors(self):
        x, y = toy_data(per_class=(6, 6, 3))
        self.assertRaisesValueError(["n_way", "at most the number of classes available (3)", "n_way=4"],
                                    sample_episodes, (x, y), 2, n_way=4)
        self.assertRaisesValueError(["k_shot", "needs 6", "{2: 3}"],
                                    sample_episodes, (x, y), 2, n_way=2, k_shot=3, q_queries=3)
        self.assertRaisesValueError("`classes` must be labels present", sample_episodes, (x, y), 2,
                                    n_way=2, classes=[0, 9])
        self.assertRaisesValueError("k_shot", sample_episodes, (x, y), 2, n_way=2, k_shot=0)
        self.assertRaisesValueError("num_episodes", sample_episodes, (x, y), 0)
        self.assertRaisesValueError("1-D integer class ids", sample_episodes, (x, np.eye(3)[y]), 2)
        self.assertRaisesValueError("at least one example", sample_episodes, (x[:0], y[:0]), 2)
        bad = x.copy()
        bad[0, 0] = np.nan
        self.assertRaisesValueError(["finite", "1 NaN"], sample_episodes, (bad, y), 2, n_way=2)
