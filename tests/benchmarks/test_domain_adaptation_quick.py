"""Runs the domain-adaptation benchmarks with --quick in-process (seconds)."""

import math
import os

import numpy as np

from benchmarks import domain_adaptation_digits
from benchmarks import domain_adaptation_moons
from benchmarks import domain_adaptation_step_time
from tests.test_case import TestCase


class DomainAdaptationBenchmarksQuickTest(TestCase):
    def test_moons(self):
        result = domain_adaptation_moons.main(["--quick", "--output", self.get_temp_dir()])
        for key in ("source-only", "DANN", "domain accuracy"):
            self.assertTrue(0.0 <= result["summary"][key]["mean"] <= 1.0)
        self.assertTrue(os.path.getsize(result["png"]) > 1000)

    def test_stroke_polarity(self):
        digit = np.zeros((1, 4, 4, 1), "uint8")
        digit[0, 1:3, 1:3] = 255
        flat = np.full((1, 4, 4, 3), 1.0, "float32")
        # |patch - digit|: a dark patch keeps the stroke bright, a bright one inverts it,
        # a mid-grey one hides it.
        blended = np.concatenate([np.abs(level * flat - np.repeat(digit, 3, -1)) for level in (40.0, 220.0, 128.0)])
        groups = domain_adaptation_digits.stroke_polarity(np.repeat(digit, 3, 0), blended)
        self.assertEqual(list(groups), ["normal", "inverted", "low contrast"])

    def test_digits_thin_strokes_with_copies(self):
        # One quick run serves every check of the table (the training is the same for either stroke set).
        result = domain_adaptation_digits.main(["--quick", "--strokes", "thin", "--copies", "2", "--first-seed", "3"])
        self.assertEqual(
            sorted(result["mean"]),
            [
                "AdaBN",
                "BN (test batches)",
                "DANN (λ→0.1)",
                "DANN (λ→1)",
                "Deep CORAL",
                "TENT (offline)",
                "TENT (online)",
                "source-only",
                "target-only",
            ],
        )
        for value in result["mean"].values():
            self.assertTrue(0.0 <= value <= 1.0)
        self.assertEqual(len(result["history"][0]["DANN (λ→1)"]["val_domain_accuracy"]), 1)
        self.assertEqual(sum(result["polarity_counts"].values()), 128)
        for groups in result["polarity"].values():
            for value in groups.values():
                self.assertTrue(0.0 <= value <= 1.0)
        self.assertEqual(result["seeds"], [3])
        # Per seed, the gap closed is (method - source-only) / (target-only - source-only) of that seed.
        run = result["per_seed"][0]
        span = run["target-only"] - run["source-only"]
        expected = (run["Deep CORAL"] - run["source-only"]) / span if span > 0 else float("nan")
        self.assertAllClose(result["gap_closed_per_seed"]["Deep CORAL"], [expected])
        self.assertEqual(
            sorted(result["gap_closed_per_seed"]),
            [
                "AdaBN",
                "BN (test batches)",
                "DANN (λ→0.1)",
                "DANN (λ→1)",
                "Deep CORAL",
                "TENT (offline)",
                "TENT (online)",
            ],
        )
        with self.assertRaisesRegex(ValueError, "`--first-seed` must be at least 0. Received: first_seed=-1"):
            domain_adaptation_digits.main(["--quick", "--first-seed", "-1"])
        with self.assertRaisesRegex(ValueError, "`--copies` must be at least 1. Received: copies=0"):
            domain_adaptation_digits.main(["--quick", "--copies", "0"])

    def test_load_original_strokes(self):
        # The default protocol's data (the quick run above uses thin strokes): --quick caps every set at 128.
        (xs, ys), (xt, _), (xt_test, yt_test), (xs_test, ys_test), (xt_labelled, _) = domain_adaptation_digits.load(
            16, quick=True
        )
        self.assertEqual((xs.shape, xt.shape, xt_test.shape, xs_test.shape), ((128, 16, 16, 3),) * 4)
        self.assertEqual((len(ys), len(yt_test), len(ys_test)), (128, 128, 128))
        self.assertIs(xt_labelled, xt)
        self.assertAllClose(xs[..., 0], xs[..., 2])  # grey digits as RGB; the target is blended with photos
        self.assertGreater(float(np.abs(xt.astype("float32") - xs).mean()), 10.0)

    def test_thin_strokes(self):
        from keras_transfer.datasets import digits as digits_lib

        x8, _ = digits_lib.digit_images(8, channels=1)
        x8 = x8[:50]
        thick = digits_lib.digit_images(32, channels=1)[0][:50]
        thin = domain_adaptation_digits.thin_strokes(x8, 32)
        self.assertEqual((thin.shape, thin.dtype), ((50, 32, 32, 1), np.uint8))
        ink_thin, ink_thick = (thin > 128).sum(axis=(1, 2, 3)), (thick > 128).sum(axis=(1, 2, 3))
        self.assertTrue(np.all(ink_thin > 0))
        # Thinner: well under half the ink of the bilinear upsampling, and inside its digit.
        self.assertLess(ink_thin.sum(), 0.5 * ink_thick.sum())
        self.assertEqual(int(np.sum((thin > 128) & (thick < 20))), 0)

    def test_affine_copies(self):
        x = np.zeros((3, 32, 32, 1), "uint8")
        x[:, 10:22, 14:18] = 255  # a vertical bar
        out = domain_adaptation_digits.affine_copies(x, 3, seed=0)
        self.assertEqual(out.shape, (9, 32, 32, 1))
        self.assertAllClose(out[:3], x)  # the originals come first
        variants = out[3:].astype("float32")
        self.assertTrue(np.all(np.abs(variants - x[:1]).sum(axis=(1, 2, 3)) > 0))
        # A ±15° rotation, 0.9-1.1 scale and ±2 px shift keep the bar's ink and its centre close.
        ink = variants.sum(axis=(1, 2, 3)) / x[0].astype("float32").sum()
        self.assertTrue(np.all((ink > 0.7) & (ink < 1.4)), ink)
        rows, cols = np.mgrid[:32, :32]
        for v in variants[..., 0]:
            centre = np.array([(v * rows).sum(), (v * cols).sum()]) / v.sum()
            self.assertLess(np.abs(centre - [15.5, 15.5]).max(), 3.5)
        self.assertAllClose(domain_adaptation_digits.affine_copies(x, 3, seed=0), out)  # seeded

    def test_tent_predictions_leave_the_source_model_unchanged(self):
        import keras

        fe, lc = domain_adaptation_digits.build_parts(8, seed=0, width=4)
        source_only = domain_adaptation_digits.SourceOnly(fe, lc)
        x = np.random.default_rng(0).integers(0, 255, size=(24, 8, 8, 3)).astype("uint8")
        before = [w.copy() for w in source_only.get_weights()]
        outputs = domain_adaptation_digits.tent_predictions(source_only, x, x[:16], lr=1e-2, batch_size=8)
        self.assertEqual(sorted(outputs), ["BN (test batches)", "TENT (offline)", "TENT (online)"])
        for logits in outputs.values():
            self.assertEqual(logits.shape, (16, 10))
        for w, b in zip(source_only.get_weights(), before):
            np.testing.assert_array_equal(w, b)
        # With no step, TENT's predictions are the source model's with BatchNorm on each batch's statistics.
        model = keras.Sequential([keras.Input((8, 8, 3)), fe, lc])
        batch_mode = np.concatenate([model(x[i : i + 8], training=True).numpy() for i in (0, 8)])
        self.assertAllClose(outputs["BN (test batches)"], batch_mode, atol=1e-4, rtol=1e-4)

    def test_step_time(self):
        result = domain_adaptation_step_time.main(["--quick"])
        self.assertTrue(all(v > 0 and math.isfinite(v) for v in result["ms_per_step"].values()))
        self.assertTrue(0.3 < result["dann_vs_source_only"] < 20)
