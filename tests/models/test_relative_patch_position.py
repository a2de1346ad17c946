"""RelativePatchPosition: patch geometry vs NumPy slicing, loss vs NumPy, fit, harness."""

import keras
import numpy as np
import pytest

from keras_transfer.datasets import load_digits
from keras_transfer.models import RelativePatchPosition
from keras_transfer.models.relative_patch_position import NEIGHBOUR_CELLS
from tests.models.test_simclr import assert_nan_is_reported
from tests.models.test_simclr import nan_hiding_encoder
from tests.test_case import TestCase

SEED = np.array([3, 5], dtype="int64")


def patch_encoder(features=4, channels=1):
    """Conv + global pooling on any image size (patches in training, whole images after)."""
    return keras.Sequential(
        [
            keras.Input((None, None, channels)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(6, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(features),
        ],
        name="encoder",
    )


def images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, size, size, 1)).astype("float32")


def numpy_cross_entropy(logits, labels):
    logits = np.asarray(logits, "float64")
    log_p = (
        logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1)[:, None]
    )
    return -np.mean(log_p[np.arange(len(labels)), labels])


def assert_fit_on_digits_reduces_the_loss(test, model):
    """Eight epochs on digit images lower the pretext loss by 0.1 and change the encoder's output."""
    x = digits_images()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = model.predict(x[:16], verbose=0)
    losses = model.fit(x, batch_size=64, epochs=8, verbose=0).history["loss"]
    test.assertLess(np.mean(losses[-2:]), np.mean(losses[:2]) - 0.1, losses)
    test.assertNotAllClose(model.predict(x[:16], verbose=0), before, atol=1e-3)


def locate(image, patch):
    """(row, col) of the unique place where `patch` occurs in `image` (continuous random pixels)."""
    p = patch.shape[0]
    hits = [
        (r, c)
        for r in range(image.shape[0] - p + 1)
        for c in range(image.shape[1] - p + 1)
        if np.array_equal(image[r : r + p, c : c + p], patch)
    ]
    assert len(hits) == 1, hits
    return hits[0]


def digits_images(n=192):
    (x, _), _ = load_digits(image_size=16, channels=1, seed=0)
    return x[:n]


class RelativePatchPositionTest(TestCase):
    def test_patches_match_numpy_slicing(self):
        # 3 * 4 + 2 * 1 = 14 = the image: no room, so the grid sits at (0, 0).
        model = RelativePatchPosition(patch_encoder(), patch_size=4, gap=1, seed=0)
        x = images(32, 14)
        centre, neighbour, labels = model.sample_pairs(x, SEED)
        labels = np.asarray(labels)
        self.assertGreaterEqual(len(set(labels.tolist())), 6)
        for b, label in enumerate(labels):
            row, col = divmod(NEIGHBOUR_CELLS[label], 3)
            self.assertAllClose(centre[b], x[b, 5:9, 5:9], atol=0)
            self.assertAllClose(neighbour[b], x[b, 5 * row : 5 * row + 4, 5 * col : 5 * col + 4], atol=0)

    def test_offset_and_jitter_stay_in_their_ranges(self):
        model = RelativePatchPosition(patch_encoder(), patch_size=3, gap=2, jitter=1, seed=0)
        x = images(24, 17)  # extent 3 * 3 + 2 * 2 + 2 = 15: grid offset 0..2
        centre, neighbour, labels = model.sample_pairs(x, SEED)
        centres = []
        for b, label in enumerate(np.asarray(labels)):
            rc, cc = locate(x[b, ..., 0], np.asarray(centre[b, ..., 0]))
            rn, cn = locate(x[b, ..., 0], np.asarray(neighbour[b, ..., 0]))
            row, col = divmod(NEIGHBOUR_CELLS[label], 3)
            self.assertTrue(1 + 5 - 1 <= rc <= 2 + 1 + 5 + 1 and 5 <= cc <= 9, (rc, cc))
            self.assertLessEqual(abs(rn - rc - 5 * (row - 1)), 2)  # two jitters of at most 1
            self.assertLessEqual(abs(cn - cc - 5 * (col - 1)), 2)
            centres.append((rc, cc))
        self.assertGreater(len(set(centres)), 4)  # offsets and jitter do vary

    def test_loss_matches_numpy_cross_entropy(self):
        model = RelativePatchPosition(patch_encoder(), patch_size=4, gap=1, seed=2)
        model.compile(optimizer="adam")
        x = images(6, 14)
        _, _, labels = model.sample_pairs(x, model.draw_seed(training=False))
        labels = np.asarray(labels)
        cells = [divmod(NEIGHBOUR_CELLS[k], 3) for k in labels]
        centre = x[:, 5:9, 5:9]
        neighbour = np.stack([x[b, 5 * r : 5 * r + 4, 5 * c : 5 * c + 4] for b, (r, c) in enumerate(cells)])
        features = np.concatenate([model.encoder(centre), model.encoder(neighbour)], axis=1)
        logits = model.head(features)
        result = model.evaluate(x, batch_size=6, verbose=0, return_dict=True)
        self.assertAllClose(result["loss"], numpy_cross_entropy(logits, labels), atol=1e-5, rtol=1e-5)
        accuracy = np.mean(np.argmax(logits, axis=1) == labels)
        self.assertAllClose(result["position_accuracy"], accuracy)

    @pytest.mark.compiled
    def test_fit_on_digits_reduces_the_loss(self):
        keras.utils.set_random_seed(0)
        model = RelativePatchPosition(patch_encoder(8), patch_size=4, gap=1, jitter=1, seed=0)
        assert_fit_on_digits_reduces_the_loss(self, model)

    def test_harness(self):
        x = images(8, 14)

        def build():
            model = RelativePatchPosition(patch_encoder(), patch_size=4, gap=1, seed=1)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            return model

        model, _ = self.run_fit_then_export_test(build, x, images(3, 14, seed=1), batch_size=8)
        self.run_fit_test(model, x, batch_size=8)
        reloaded = self.run_serialization_test(model, x)
        self.assertEqual(int(reloaded.optimizer.iterations.numpy()), 3)
        model.fit(x, batch_size=4, epochs=1, verbose=0, shuffle=False)
        reloaded.fit(x, batch_size=4, epochs=1, verbose=0, shuffle=False)
        for a, b in zip(model.weights, reloaded.weights):  # the reloaded model draws the same patches
            self.assertAllClose(b, a, atol=1e-6, rtol=1e-6)
        self.assertAllClose(model.predict(x, verbose=0), model.encoder.predict(x, verbose=0))

    def test_nan_is_reported_and_stops_training(self):
        clean = images(16, 14)
        bad = clean.copy()
        bad[0, 6, 6, 0] = np.nan  # inside the centre patch, which every step encodes

        def build():
            model = RelativePatchPosition(nan_hiding_encoder((None, None, 1)), patch_size=4, gap=1, seed=0)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            return model

        assert_nan_is_reported(self, build, bad, clean, fit_kwargs={"batch_size": 8})

    def test_errors(self):
        fixed = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
        self.assertRaisesValueError(
            ["`patch_size` must match", "patch_size=4", "(None, 8, 8, 1)", "keras.Input((4, 4, channels))"],
            RelativePatchPosition,
            fixed,
            patch_size=4,
        )
        enc = patch_encoder()
        self.assertRaisesValueError(["`patch_size`", "patch_size=0"], RelativePatchPosition, enc, patch_size=0)
        self.assertRaisesValueError(["`gap`", "gap=-1"], RelativePatchPosition, enc, patch_size=4, gap=-1)
        self.assertRaisesValueError(["`jitter`", "jitter=1.5"], RelativePatchPosition, enc, patch_size=4, jitter=1.5)
        self.assertRaisesValueError(
            ["`head_hidden_dim`", "head_hidden_dim=0"], RelativePatchPosition, enc, patch_size=4, head_hidden_dim=0
        )
        model = RelativePatchPosition(enc, patch_size=4, gap=1, jitter=1)
        model.compile(optimizer="adam")
        self.assertRaisesValueError(
            ["must fit a 3x3 grid", "= 16 pixels", "patch_size=4, gap=1, jitter=1", "(4, 14, 14, 1)", "smaller"],
            model.fit,
            images(4, 14),
            batch_size=4,
            verbose=0,
        )
        self.assertRaisesValueError(
            ["labels are made", "tuple"], model.fit, (images(4, 16), images(4, 16)), batch_size=4, verbose=0
        )
        self.assertRaisesValueError(
            ["rank 4", "x[..., None]"], model.fit, images(4, 16)[..., 0], batch_size=4, verbose=0
        )
