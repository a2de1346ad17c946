import keras
import numpy as np
import tensorflow as tf

from keras_transfer.datasets import CurriculumOrder
from keras_transfer.datasets import curriculum_dataset
from keras_transfer.datasets import difficulty_order
from keras_transfer.datasets.curriculum_dataset import PREFETCHED_BATCHES
from keras_transfer.models import DANN
from keras_transfer.schedules import FixedExponentialPacing
from keras_transfer.schedules import StepPacing
from tests.schedules import pacing_reference as reference
from tests.test_case import TestCase


def indexed(n, seed=0):
    """x[i] = i (so a batch shows which examples it holds), random difficulty, labels i % 3."""
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype="float32")[:, None]
    return x, np.arange(n) % 3, rng.permutation(n).astype("float64") + rng.uniform(0, 0.5, n)


def batch_indices(dataset):
    return [np.asarray(batch[0] if isinstance(batch, tuple) else batch)[:, 0].astype(int) for batch in dataset]


class CurriculumDatasetTest(TestCase):
    def test_batches_come_from_the_easiest_prefix_then_from_everything(self):
        n, batch = 200, 8
        x, y, difficulty = indexed(n)
        pacing = FixedExponentialPacing(0.1, 2.0, step_length=3, total_steps=400)
        dataset = curriculum_dataset(x, y, difficulty, pacing, batch_size=batch, seed=3)
        self.assertEqual(len(dataset), 400)
        order = np.argsort(difficulty)  # the reference order: easiest (lowest score) first
        batches = [(np.asarray(bx)[:, 0].astype(int), np.asarray(by)) for bx, by in dataset]
        full = reference.first_full_step(lambda s: reference.fixed_exponential(s, "0.1", "2", 3))
        for step, (rows, labels) in enumerate(batches):
            allowed = set(order[: reference.count(reference.fixed_exponential(step, "0.1", "2", 3), n)].tolist())
            self.assertEqual(len(set(rows.tolist())), batch, f"step {step} repeats an example")
            self.assertTrue(set(rows.tolist()) <= allowed, f"step {step} left the prefix")
            self.assertEqual(labels.tolist(), (rows % 3).tolist())
        # Steps 0-8 (fractions 0.1, 0.2, 0.4) never touch the hardest 60 %; steps 6-8 reach past the first 40 %.
        early = set(np.concatenate([rows for rows, _ in batches[:9]]).tolist())
        self.assertTrue(early <= set(order[:80].tolist()))
        self.assertTrue(set(np.concatenate([rows for rows, _ in batches[6:9]]).tolist()) & set(order[40:80].tolist()))
        self.assertEqual(full, 12)
        late = set(np.concatenate([rows for rows, _ in batches[full:]]).tolist())
        self.assertEqual(late, set(range(n)))

    def test_uniform_within_the_prefix(self):
        n, batch, steps = 80, 5, 400
        x, y, difficulty = indexed(n, seed=1)
        pacing = StepPacing(0.25, step_length=steps, total_steps=steps + 1)
        dataset = curriculum_dataset(x, y, difficulty, pacing, batch_size=batch, steps=steps)
        counts = np.bincount(np.concatenate(batch_indices(dataset)), minlength=n)
        prefix = np.argsort(difficulty)[:20]
        self.assertEqual(int(counts.sum()), int(counts[prefix].sum()))
        # 2000 draws over 20 examples: 100 each; a binomial sd of ~9.7 (less without replacement).
        self.assertLess(np.abs(counts[prefix] - 100).max(), 40, counts[prefix])

    def test_balanced_prefix(self):
        n = 90
        x = np.arange(n, dtype="float32")[:, None]
        y = np.arange(n) % 3
        difficulty = y + np.linspace(0, 0.5, n)  # class 0 entirely easier than class 1, than class 2
        pacing = StepPacing(1 / 3, step_length=50, total_steps=51)
        plain = np.concatenate(batch_indices(curriculum_dataset(x, y, difficulty, pacing, 6, steps=20)))
        self.assertEqual(set((plain % 3).tolist()), {0})
        balanced = curriculum_dataset(x, y, difficulty, pacing, 6, steps=20, balance_classes=True)
        rows = np.concatenate(batch_indices(balanced))
        allowed = set(difficulty_order(difficulty, labels=y)[:30].tolist())
        self.assertTrue(set(rows.tolist()) <= allowed)
        self.assertEqual(set((rows % 3).tolist()), {0, 1, 2})
        self.assertEqual(np.bincount(y[sorted(allowed)]).tolist(), [10, 10, 10])

    def test_resuming_gives_the_same_batches(self):
        x, y, difficulty = indexed(60)
        pacing = FixedExponentialPacing(0.2, 1.5, step_length=2, total_steps=20)
        whole = batch_indices(curriculum_dataset(x, y, difficulty, pacing, batch_size=6, seed=7))
        resumed = batch_indices(curriculum_dataset(x, y, difficulty, pacing, batch_size=6, seed=7, initial_step=9))
        self.assertEqual(len(resumed), 11)
        for a, b in zip(whole[9:], resumed):
            self.assertEqual(a.tolist(), b.tolist())
        other_seed = batch_indices(curriculum_dataset(x, y, difficulty, pacing, batch_size=6, seed=8))
        self.assertNotEqual([b.tolist() for b in other_seed], [b.tolist() for b in whole])
        endless = curriculum_dataset(x, None, difficulty, StepPacing(0.2, 3), batch_size=6, seed=7)
        self.assertEqual(endless.cardinality(), tf.data.INFINITE_CARDINALITY)
        self.assertEqual(next(iter(endless)).shape, (6, 1))

    def test_a_resumed_fit_ends_at_the_same_weights(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 3)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        difficulty = -np.abs(x[:, 0])
        pacing = FixedExponentialPacing(0.25, 2.0, step_length=3, total_steps=10)

        def model():
            keras.utils.set_random_seed(0)
            m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            m.compile(keras.optimizers.SGD(0.2, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(True))
            return m

        straight = model()
        straight.fit(curriculum_dataset(x, y, difficulty, pacing, batch_size=8), epochs=2, steps_per_epoch=5, verbose=0)
        resumed = model()
        resumed.fit(curriculum_dataset(x, y, difficulty, pacing, batch_size=8), steps_per_epoch=4, verbose=0)
        part_two = curriculum_dataset(x, y, difficulty, pacing, batch_size=8, initial_step=4)
        self.assertEqual(len(part_two), 6)
        resumed.fit(part_two, verbose=0)
        self.assertEqual(int(resumed.optimizer.iterations), 10)
        for a, b in zip(straight.get_weights(), resumed.get_weights()):
            self.assertAllClose(a, b, atol=1e-6)

    def test_a_curriculum_order_is_read_while_iterating(self):
        x, y, difficulty = indexed(40)
        order = CurriculumOrder(difficulty)
        pacing = StepPacing(0.25, step_length=1000)
        iterator = iter(curriculum_dataset(x, y, order, pacing, batch_size=4, seed=0))
        first = set(np.asarray(next(iterator)[0])[:, 0].astype(int).tolist())
        self.assertTrue(first <= set(np.argsort(difficulty)[:10].tolist()))
        order.update(-difficulty)  # anti-curriculum: the hardest ten become the prefix
        for _ in range(PREFETCHED_BATCHES + 2):  # batches computed ahead with the old order
            next(iterator)
        hardest = set(np.argsort(-difficulty)[:10].tolist())
        for _ in range(10):
            self.assertTrue(set(np.asarray(next(iterator)[0])[:, 0].astype(int).tolist()) <= hardest)

    def test_dann_trains_on_a_curriculum_source(self):
        rng = np.random.default_rng(0)
        xs = rng.normal(size=(48, 4)).astype("float32")
        ys = (xs[:, 0] > 0).astype("int64")
        xt = (rng.normal(size=(32, 4)) + 1.0).astype("float32")
        pacing = StepPacing(0.5, step_length=3, total_steps=6)
        source = curriculum_dataset(xs, ys, -np.abs(xs[:, 0]), pacing, batch_size=8, seed=1)
        target = tf.data.Dataset.from_tensor_slices(xt).repeat().batch(8)
        # DANN's batches: ((source_x, target_x), source_y).
        pairs = tf.data.Dataset.zip((source, target)).map(lambda s, t: ((s[0], t), s[1]))
        keras.utils.set_random_seed(0)
        fe = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")])
        model = DANN(fe, keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)]), factor=0.5)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        before = [w.copy() for w in model.get_weights()]
        history = model.fit(pairs, epochs=2, steps_per_epoch=3, verbose=0)
        self.assertEqual(int(model.optimizer.iterations), 6)
        for key in ("loss", "label_loss", "domain_loss"):
            self.assertTrue(np.all(np.isfinite(history.history[key])), key)
        self.assertTrue(any(not np.allclose(a, b) for a, b in zip(before, model.get_weights())))

    def test_bad_input(self):
        x, y, difficulty = indexed(20)
        pacing = StepPacing(0.5, step_length=5)
        self.assertRaisesValueError(
            ["`difficulty` must have one score per example (20)", "19 scores"],
            curriculum_dataset,
            x,
            y,
            difficulty[:19],
            pacing,
            batch_size=4,
        )
        nan = difficulty.copy()
        nan[3] = np.nan
        self.assertRaisesValueError(
            ["`difficulty` must hold finite scores", "1 NaN", "index 3"], curriculum_dataset, x, y, nan, pacing, 4
        )
        self.assertRaisesValueError(
            "`x` must contain at least one example", curriculum_dataset, x[:0], y[:0], [], pacing, 4
        )
        self.assertRaisesValueError(
            ["`batch_size` must be at most the 10 examples available at step 0", "batch_size=11", "at least 0.55"],
            curriculum_dataset,
            x,
            y,
            difficulty,
            pacing,
            batch_size=11,
        )
        self.assertRaisesValueError(
            ["`pacing` must be a keras_transfer.schedules.PacingFunction"],
            curriculum_dataset,
            x,
            y,
            difficulty,
            lambda step: 1.0,
            4,
        )
        self.assertRaisesValueError("len(y)=19", curriculum_dataset, x, y[:19], difficulty, pacing, 4)
        bad_x = x.copy()
        bad_x[0] = np.inf
        self.assertRaisesValueError(
            "`x` must contain only finite values", curriculum_dataset, bad_x, y, difficulty, pacing, 4
        )
        self.assertRaisesValueError(
            "a CurriculumOrder of 21 examples", curriculum_dataset, x, y, CurriculumOrder(np.zeros(21)), pacing, 4
        )
        finite = StepPacing(0.5, step_length=5, total_steps=10)
        self.assertRaisesValueError(
            ["`steps` must be a positive integer", "Received: steps=0"],
            curriculum_dataset,
            x,
            y,
            difficulty,
            finite,
            4,
            initial_step=10,
        )
        self.assertRaisesValueError(
            "Received: initial_step=-1", curriculum_dataset, x, y, difficulty, pacing, 4, initial_step=-1
        )
        self.assertRaisesValueError(
            "Build the order with labels",
            curriculum_dataset,
            x,
            y,
            CurriculumOrder(difficulty),
            pacing,
            4,
            balance_classes=True,
        )
        self.assertRaisesValueError(
            "with y=None", curriculum_dataset, x, None, difficulty, pacing, 4, balance_classes=True
        )
