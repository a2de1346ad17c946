"""JigsawPuzzle: tiles vs NumPy reassembly, loss vs NumPy, fit, harness."""

import keras
import numpy as np
import pytest

from keras_transfer.models import JigsawPuzzle
from keras_transfer.ops import max_hamming_permutations
from tests.models.test_relative_patch_position import SEED
from tests.models.test_relative_patch_position import assert_fit_on_digits_reduces_the_loss
from tests.models.test_relative_patch_position import images
from tests.models.test_relative_patch_position import numpy_cross_entropy
from tests.models.test_relative_patch_position import patch_encoder
from tests.models.test_simclr import assert_nan_is_reported
from tests.models.test_simclr import nan_hiding_encoder
from tests.test_case import TestCase


def numpy_tiles(image, grid, tile, gap):
    """The grid's tiles of one image in reading order (grid at the top-left, no jitter)."""
    step = tile + gap
    return [image[r * step : r * step + tile, c * step : c * step + tile] for r in range(grid) for c in range(grid)]


class JigsawPuzzleTest(TestCase):
    def test_shuffled_tiles_reassemble_the_image(self):
        model = JigsawPuzzle(patch_encoder(), tile_size=4, grid_size=3, permutations=12, gap=0, seed=0)
        self.assertAllClose(model.permutation_set, max_hamming_permutations(9, 12, seed=0), atol=0)
        x = images(16, 12)
        tiles, labels = model.shuffle_tiles(x, SEED)
        tiles, labels = np.asarray(tiles), np.asarray(labels)
        self.assertGreaterEqual(len(set(labels.tolist())), 6)
        for b, label in enumerate(labels):
            perm = model.permutation_set[label]
            canvas = np.zeros_like(x[b])
            for i, tile in enumerate(tiles[b]):  # position i holds tile perm[i]
                row, col = divmod(int(perm[i]), 3)
                canvas[4 * row : 4 * row + 4, 4 * col : 4 * col + 4] = tile
            self.assertAllClose(canvas, x[b], atol=0)
        # With a gap the tiles are cut 1 + 4 pixels apart.
        gapped = JigsawPuzzle(patch_encoder(), tile_size=4, grid_size=2, permutations=5, gap=1, seed=0)
        x = images(6, 9)
        tiles, labels = gapped.shuffle_tiles(x, SEED)
        for b, label in enumerate(np.asarray(labels)):
            expected = numpy_tiles(x[b], 2, 4, 1)
            for i, j in enumerate(gapped.permutation_set[label]):
                self.assertAllClose(tiles[b, i], expected[j], atol=0)

    def test_loss_matches_numpy_cross_entropy(self):
        model = JigsawPuzzle(patch_encoder(), tile_size=4, grid_size=2, permutations=10, gap=1, seed=4)
        model.compile(optimizer="adam")
        x = images(6, 9)
        _, labels = model.shuffle_tiles(x, model.draw_seed(training=False))
        labels = np.asarray(labels)
        features = []
        for b, label in enumerate(labels):
            tiles = numpy_tiles(x[b], 2, 4, 1)
            shuffled = np.stack([tiles[j] for j in model.permutation_set[label]])
            features.append(np.asarray(model.encoder(shuffled)).reshape(-1))  # concatenated in shuffled order
        logits = model.head(np.stack(features))
        result = model.evaluate(x, batch_size=6, verbose=0, return_dict=True)
        self.assertAllClose(result["loss"], numpy_cross_entropy(logits, labels), atol=1e-5, rtol=1e-5)
        self.assertAllClose(result["permutation_accuracy"], np.mean(np.argmax(logits, axis=1) == labels))

    @pytest.mark.compiled
    def test_fit_on_digits_reduces_the_loss(self):
        keras.utils.set_random_seed(0)
        model = JigsawPuzzle(patch_encoder(8), tile_size=6, grid_size=2, permutations=8, gap=2, jitter=1, seed=0)
        assert_fit_on_digits_reduces_the_loss(self, model)

    def test_harness(self):
        x = images(8, 8)

        def build():
            model = JigsawPuzzle(patch_encoder(), tile_size=4, grid_size=2, permutations=6, gap=0, seed=1)
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            return model

        model, _ = self.run_fit_then_export_test(build, x, images(3, 8, seed=1), batch_size=8)
        self.run_fit_test(model, x, batch_size=8)
        reloaded = self.run_serialization_test(model, x)
        self.assertAllClose(reloaded.permutation_set, model.permutation_set, atol=0)
        model.fit(x, batch_size=4, epochs=1, verbose=0, shuffle=False)
        reloaded.fit(x, batch_size=4, epochs=1, verbose=0, shuffle=False)
        for a, b in zip(model.weights, reloaded.weights):  # the reloaded model draws the same puzzles
            self.assertAllClose(b, a, atol=1e-6, rtol=1e-6)

    def test_nan_is_reported_and_stops_training(self):
        clean = images(16, 8)
        bad = clean.copy()
        bad[0, 2, 2, 0] = np.nan  # every tile of the 2x2 grid is encoded

        def build():
            model = JigsawPuzzle(
                nan_hiding_encoder((None, None, 1)), tile_size=4, grid_size=2, permutations=6, gap=0, seed=0
            )
            model.compile(optimizer=keras.optimizers.Adam(1e-2))
            return model

        assert_nan_is_reported(self, build, bad, clean, fit_kwargs={"batch_size": 8})

    def test_errors(self):
        enc = patch_encoder()
        self.assertRaisesValueError(
            ["`permutations` must be at most 24", "permutations=25", "larger grid_size"],
            JigsawPuzzle,
            enc,
            tile_size=4,
            grid_size=2,
            permutations=25,
        )
        self.assertRaisesValueError(["`grid_size`", "grid_size=1"], JigsawPuzzle, enc, tile_size=4, grid_size=1)
        self.assertRaisesValueError(["`grid_size`", "grid_size=5"], JigsawPuzzle, enc, tile_size=4, grid_size=5)
        self.assertRaisesValueError(["`permutations`", "permutations=0"], JigsawPuzzle, enc, 4, permutations=0)
        fixed = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
        self.assertRaisesValueError(["`patch_size` must match", "patch_size=4"], JigsawPuzzle, fixed, 4, 2, 2)
        model = JigsawPuzzle(enc, tile_size=4, grid_size=2, permutations=2, gap=1)
        model.compile(optimizer="adam")
        self.assertRaisesValueError(
            ["must fit a 2x2 grid", "= 9 pixels", "(4, 8, 8, 1)"], model.fit, images(4, 8), batch_size=4, verbose=0
        )
