import os
import warnings

import keras
import numpy as np

from keras_transfer.datasets import load_digits
from keras_transfer.datasets import make_dataset
from keras_transfer.optimizers.discriminative import DiscriminativeAdam
from keras_transfer.optimizers.discriminative import DiscriminativeSGD
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import compile_for_fine_tuning
from keras_transfer.recipes import evaluate_accuracy
from keras_transfer.recipes import fine_tune
from keras_transfer.recipes import get_backbone
from keras_transfer.recipes import get_head
from keras_transfer.recipes import learning_rate_multipliers
from keras_transfer.recipes import unfreeze_backbone
from keras_transfer.recipes.fine_tune import classification_loss
from keras_transfer.recipes.linear_probe import CANDIDATE_C
from tests.test_case import TestCase


class FineTuneTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        (x_train, y_train), (x_test, y_test) = load_digits(image_size=16, channels=1, seed=0)
        mask_train, mask_test = y_train < 3, y_test < 3
        cls.x, cls.y = x_train[mask_train][:96], y_train[mask_train][:96]
        cls.x_val, cls.y_val = x_test[mask_test][:60], y_test[mask_test][:60]
        cls.model = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0)
        cls.initial = cls.model.get_weights()

    def setUp(self):
        super().setUp()
        self.model.set_weights(self.initial)

    def probe_then_fine_tune(self, epochs, blocks):
        return fine_tune(
            self.model,
            self.x,
            self.y,
            validation_data=(self.x_val, self.y_val),
            probe="convex",
            epochs=epochs,
            blocks=blocks,
            learning_rate=1e-3,
            verbose=0,
        )

    def test_convex_probe_then_fine_tune_last_block(self):
        backbone = get_backbone(self.model)
        frozen = [backbone.get_layer(n) for n in ("block1_conv", "block2_conv")]
        frozen += [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
        before = {id(v): v.numpy().copy() for layer in frozen for v in layer.weights}
        tuned_before = backbone.get_layer("block3_conv").kernel.numpy().copy()
        model, histories = self.probe_then_fine_tune(epochs=2, blocks="last")
        self.assertIs(model, self.model)
        probe = histories["probe"]
        self.assertIn(probe["C"], CANDIDATE_C)
        self.assertIn("accuracy", probe["val"])
        self.assertGreater(probe["val"]["accuracy"], 0.6)
        ft = histories["fine_tune"].history
        self.assertLen(ft["loss"], 2)
        self.assertIn("val_accuracy", ft)
        self.assertTrue(np.all(np.isfinite(ft["loss"])))
        for layer in frozen:  # frozen blocks and BatchNorm statistics did not move
            for v in layer.weights:
                np.testing.assert_array_equal(before[id(v)], v.numpy(), err_msg=v.path)
        self.assertNotAllClose(backbone.get_layer("block3_conv").kernel.numpy(), tuned_before)
        self.assertGreater(evaluate_accuracy(model, self.x_val, self.y_val), 0.6)

    def test_fit_probe_and_dataset_input(self):
        ds = make_dataset(self.x, self.y, batch_size=32)
        _, histories = fine_tune(self.model, ds, probe="fit", probe_epochs=2, epochs=1, verbose=0)
        self.assertLen(histories["probe"].history["loss"], 2)
        self.assertLen(histories["fine_tune"].history["loss"], 1)

    def test_convex_probe_streams_a_dataset(self):
        # A tf.data input (the CLI's image folders) goes to the probe batch by batch, read once;
        # the head it installs is the one the arrays give (same C, same training accuracy). In
        # the same order: C is cross-validated on folds drawn over the example order.
        ds = make_dataset(self.x, self.y, batch_size=32)
        _, from_dataset = fine_tune(self.model, ds, probe="convex", epochs=0, verbose=0)
        head_from_dataset = [w.numpy().copy() for w in get_head(self.model).weights]
        self.model.set_weights(self.initial)
        _, from_arrays = fine_tune(self.model, self.x, self.y, probe="convex", epochs=0, verbose=0)
        self.assertEqual(from_dataset["probe"]["C"], from_arrays["probe"]["C"])
        self.assertAllClose(from_dataset["probe"]["train_accuracy"], from_arrays["probe"]["train_accuracy"])
        self.assertNotAllClose(head_from_dataset[0], self.initial[-2])
        # Both solve the same problem; the solutions agree to the solver's tolerance, well inside 1e-2.
        for a, b in zip(head_from_dataset, get_head(self.model).weights):
            self.assertAllClose(a, b.numpy(), atol=1e-2, rtol=0)

    def test_dataset_input_gives_no_shuffle_warning(self):
        # Keras warns "`shuffle=True` was passed, but will be ignored" when fit gets a tf.data
        # input with shuffle=True; the recipe shuffles in make_dataset and must not pass it.
        ds = make_dataset(self.x, self.y, batch_size=32)
        for probe in ("convex", "fit"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                fine_tune(self.model, ds, validation_data=ds, probe=probe, probe_epochs=1, epochs=1, verbose=0)
            messages = [str(w.message) for w in caught if "shuffle" in str(w.message)]
            self.assertEqual(messages, [], probe)

    def test_export_straight_after_fit_and_after_reload(self):
        # fine_tune's result (convex probe, compiled for the fine-tuning phase), then the
        # user's fit and export with nothing called in between, then .keras reload and export.
        def build_and_compile():
            model = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0)
            model, _ = fine_tune(model, self.x, self.y, probe="convex", epochs=0, verbose=0)
            return model

        # Float32 images, as the signature declares (a uint8 client is refused with a TypeError).
        x = self.x.astype("float32")
        self.run_fit_then_export_test(build_and_compile, x, x[:7], fit_y=self.y, batch_size=16)
        # Straight from fine_tune (its own fine-tuning fit), exported and reloaded.
        model = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0)
        model, _ = fine_tune(model, self.x, self.y, probe="convex", epochs=1, batch_size=32, verbose=0)
        path = os.path.join(self.get_temp_dir(), "fine_tuned")
        model.export(path, verbose=False)
        self.assertExportMatchesPredict(path, model, x[:7])
        reloaded_path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(reloaded_path)
        reloaded = keras.saving.load_model(reloaded_path)
        reloaded.export(path + "_reloaded", verbose=False)
        self.assertExportMatchesPredict(path + "_reloaded", reloaded, x[:7])

    def test_no_probe_no_epochs_changes_nothing(self):
        _, histories = fine_tune(self.model, (self.x, self.y), probe=None, epochs=0, verbose=0)
        self.assertEqual(histories, {"probe": None, "fine_tune": None})
        for a, b in zip(self.initial, self.model.get_weights()):
            np.testing.assert_array_equal(a, b)

    def test_plain_fine_tune_with_discriminative_rates(self):
        _, histories = fine_tune(
            self.model, self.x, self.y, probe=None, epochs=1, backbone_multiplier=0.1, layer_decay=0.5, verbose=0
        )
        self.assertIsNone(histories["probe"])
        self.assertIsInstance(self.model.optimizer, DiscriminativeAdam)

    def test_discriminative_step_matches_plain_sgd(self):
        # Reference: one plain-Keras SGD step on a copy. With backbone_multiplier m, the backbone's
        # update must be m times the plain one and the head's the same.
        lr, m = 0.05, 0.3
        x, y = self.x[:16], self.y[:16]
        reference = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0)
        reference.set_weights(self.initial)
        unfreeze_backbone(reference)
        reference.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
        reference.train_on_batch(x, y)

        unfreeze_backbone(self.model)
        compile_for_fine_tuning(self.model, learning_rate=lr, optimizer="sgd", backbone_multiplier=m)
        self.assertIsInstance(self.model.optimizer, DiscriminativeSGD)
        self.model.train_on_batch(x, y)
        start = {v.path: w for v, w in zip(self.model.weights, self.initial)}
        ref_after = {v.path: v.numpy() for v in reference.weights}
        checked = 0
        for v in self.model.trainable_weights:
            scale = 1.0 if v.path.startswith("head/") else m
            expected = start[v.path] + scale * (ref_after[v.path] - start[v.path])
            self.assertAllClose(v.numpy(), expected, atol=1e-6, rtol=1e-5, msg=v.path)
            checked += 1
        self.assertEqual(checked, 5)  # three conv kernels, head kernel and bias

    def test_learning_rate_multipliers(self):
        pairs = learning_rate_multipliers(self.model, 0.1)
        self.assertEqual(pairs[0], ("^block1_conv/", 0.1))
        self.assertLen(pairs, 6)  # 3 conv + 3 BatchNorm layers
        decayed = dict(learning_rate_multipliers(self.model, 0.5, layer_decay=0.5))
        self.assertAlmostEqual(decayed["^block3_conv/"], 0.5)
        self.assertAlmostEqual(decayed["^block2_conv/"], 0.25)
        self.assertAlmostEqual(decayed["^block1_bn/"], 0.125)

    def test_compile_and_loss(self):
        compile_for_fine_tuning(self.model, learning_rate=0.01)
        self.assertIsInstance(self.model.optimizer, keras.optimizers.Adam)
        self.assertNotIsInstance(self.model.optimizer, DiscriminativeAdam)
        self.assertAllClose(self.model.optimizer.learning_rate, 0.01)
        self.assertFalse(classification_loss(self.model).from_logits)
        logits = build_classifier("simple_cnn", 2, (8, 8, 1), activation=None)
        self.assertTrue(classification_loss(logits).from_logits)

    def test_auto_blocks_keeps_the_best_on_validation(self):
        model, histories = self.probe_then_fine_tune(epochs=1, blocks="auto")
        probed = histories["probe"]
        chosen, accuracy = histories["blocks"]["chosen"], histories["blocks"]["val_accuracy"]
        self.assertEqual(list(accuracy), ["first", "middle", "last", "all"])
        best = max(accuracy.values())
        self.assertEqual(chosen, next(name for name, value in accuracy.items() if value == best))
        self.assertGreaterEqual(best, probed["val"]["accuracy"] - 0.1)
        # The model holds the chosen run: its validation accuracy, its trainable set.
        self.assertAlmostEqual(evaluate_accuracy(model, self.x_val, self.y_val), accuracy[chosen], places=6)
        reference = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0)
        unfreeze_backbone(reference, blocks=chosen)
        self.assertEqual([w.path for w in model.trainable_weights], [w.path for w in reference.trainable_weights])
        self.assertLen(histories["fine_tune"].history["loss"], 1)

    def test_errors(self):
        model, x, y = self.model, self.x, self.y
        self.assertRaisesValueError(["`probe`", "probe='linear'"], fine_tune, model, x, y, probe="linear")
        self.assertRaisesValueError(["`epochs`", "epochs=-1"], fine_tune, model, x, y, epochs=-1)
        self.assertRaisesValueError(
            ["`probe_epochs`", "probe_epochs=0"], fine_tune, model, x, y, probe="fit", probe_epochs=0, verbose=0
        )
        self.assertRaisesValueError(["`train_data labels`", "[0, 3)"], fine_tune, model, x, y + 1)
        self.assertRaisesValueError(
            ["`validation_data labels`", "[0, 3)"], fine_tune, model, x, y, validation_data=(self.x_val, self.y_val + 5)
        )
        self.assertRaisesValueError(["`train_data`", "at least one example"], fine_tune, model, x[:0], y[:0])
        self.assertRaisesValueError(
            ["`blocks`", "blocks='top'", "'auto'"], fine_tune, model, x, y, probe=None, blocks="top", verbose=0
        )
        self.assertRaisesValueError(
            ["`validation_data`", "blocks='auto'"], fine_tune, model, x, y, probe=None, blocks="auto", verbose=0
        )
        self.assertRaisesValueError(
            ["`learning_rate`", "learning_rate=0"], compile_for_fine_tuning, model, learning_rate=0
        )
        self.assertRaisesValueError(
            ["`backbone_multiplier`", "backbone_multiplier=-1"], learning_rate_multipliers, model, -1
        )
        self.assertRaisesValueError(["`layer_decay`", "layer_decay=0"], learning_rate_multipliers, model, 1.0, 0)
