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
        self.assertRaisesValueError(
            ["n_way", "at most the number of classes available (3)", "n_way=4"], sample_episodes, (x, y), 2, n_way=4
        )
        self.assertRaisesValueError(
            ["k_shot", "needs 6", "{2: 3}"], sample_episodes, (x, y), 2, n_way=2, k_shot=3, q_queries=3
        )
        self.assertRaisesValueError(
            "`classes` must be labels present", sample_episodes, (x, y), 2, n_way=2, classes=[0, 9]
        )
        self.assertRaisesValueError("k_shot", sample_episodes, (x, y), 2, n_way=2, k_shot=0)
        self.assertRaisesValueError("num_episodes", sample_episodes, (x, y), 0)
        self.assertRaisesValueError("1-D integer class ids", sample_episodes, (x, np.eye(3)[y]), 2)
        self.assertRaisesValueError("at least one example", sample_episodes, (x[:0], y[:0]), 2)
        bad = x.copy()
        bad[0, 0] = np.nan
        self.assertRaisesValueError(["finite", "1 NaN"], sample_episodes, (bad, y), 2, n_way=2)


class ClassAugmentationTest(TestCase):
    def images(self):
        # 3 classes x 4 examples of 3x3 images: an asymmetric pattern (every transform gives a
        # different image) plus, in the centre (fixed by every transform), 10 * class + index.
        y = np.repeat(np.arange(3), 4)
        x = np.tile(100.0 + np.arange(9, dtype="float32").reshape(1, 3, 3, 1), (12, 1, 1, 1))
        x[:, 1, 1, 0] = 10 * y + np.tile(np.arange(4), 3)
        return x, y

    def test_transforms_are_new_classes_and_match_numpy(self):
        x, y = self.images()
        augs = ["rot90", "rot180", "rot270", "transpose", "flip_lr", "flip_ud"]
        reference = {
            None: lambda a: a,
            "rot90": lambda a: np.rot90(a, 1),
            "rot180": lambda a: np.rot90(a, 2),
            "rot270": lambda a: np.rot90(a, 3),
            "transpose": lambda a: a.transpose(1, 0, 2),
            "flip_lr": np.fliplr,
            "flip_ud": np.flipud,
        }
        # 2 original classes x 7 versions = 14 classes: 14-way episodes are possible, 15 are not.
        (sx, sy, qx), qy = sample_episodes(
            (x, y), 30, n_way=14, k_shot=1, q_queries=2, classes=[0, 1], seed=0, class_augmentations=augs
        )
        originals = {(c, i): x[4 * c + i, :, :, 0] for c in range(2) for i in range(4)}
        for e in range(30):
            label_of = {}
            for xs, ys in ((sx[e], sy[e]), (qx[e], qy[e])):
                for image, label in zip(xs[..., 0], ys):
                    # Which (class, index, transform) produced this image?
                    found = [
                        (c, i, name)
                        for (c, i), o in originals.items()
                        for name, f in reference.items()
                        if np.array_equal(f(o[..., None])[..., 0], image)
                    ]
                    self.assertEqual(len(found), 1)
                    c, _, name = found[0]
                    label_of.setdefault(int(label), set()).add((c, name))
            # One (class, transform) per episode label; all 14 distinct.
            self.assertTrue(all(len(v) == 1 for v in label_of.values()))
            self.assertEqual(len(set.union(*label_of.values())), 14)
            # Class 2 was not in `classes`: none of its images, transformed or not.
            self.assertTrue(np.all(sx[e][:, 1, 1] < 20) and np.all(qx[e][:, 1, 1] < 20))
        self.assertRaisesValueError(
            ["n_way", "(14)", "class_augmentations"],
            sample_episodes,
            (x, y),
            2,
            n_way=15,
            classes=[0, 1],
            class_augmentations=augs,
        )

    def test_untouched_without_augmentations_and_episode_dataset(self):
        x, y = self.images()
        a = sample_episodes((x, y), 4, 3, 1, 2, seed=3)
        b = sample_episodes((x, y), 4, 3, 1, 2, seed=3, class_augmentations=None)
        self.assertAllClose(a[0][0], b[0][0], atol=0)
        (sx, _, _), _ = next(
            iter(episode_dataset((x, y), 6, 1, 1, episodes_per_batch=2, seed=0, class_augmentations=["rot180"]))
        )
        self.assertEqual(tuple(sx.shape), (2, 6, 3, 3, 1))
        self.assertEqual(len({tuple(v) for v in sx.numpy()[0, :, :, :, 0].reshape(6, 9)}), 6)

    def test_augmentation_errors(self):
        x, y = self.images()
        self.assertRaisesValueError(
            ["class_augmentations", "rot90"], sample_episodes, (x, y), 2, class_augmentations="rot90"
        )
        self.assertRaisesValueError(
            ["distinct names", "'spin'"], sample_episodes, (x, y), 2, class_augmentations=["spin"]
        )
        self.assertRaisesValueError(
            "distinct names", sample_episodes, (x, y), 2, class_augmentations=["rot90", "rot90"]
        )
        self.assertRaisesValueError(
            ["[N, H, W]", "(12, 9)"], sample_episodes, (x.reshape(12, 9), y), 2, class_augmentations=["rot180"]
        )
        self.assertRaisesValueError("square images", sample_episodes, (x[:, :2], y), 2, class_augmentations=["rot90"])
        (sx, _, _), _ = sample_episodes((x[:, :2], y), 2, n_way=6, q_queries=2, class_augmentations=["flip_lr"])
        self.assertEqual(sx.shape, (2, 6, 2, 3, 1))
