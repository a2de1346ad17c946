"""`CLIP(loss_type="siglip")` and `CLIP(chunk_size=...)` (gradient caching)."""

import math

import keras
import numpy as np

from tests.losses.test_siglip_loss import numpy_siglip_loss
from tests.models.test_clip import build_clip
from tests.models.test_clip import check_mirrored_probe
from tests.models.test_clip import make_data
from tests.test_case import TestCase


def one_sgd_step(data, batch_size, **kwargs):
    """The weights before and after one SGD(1) step: their difference is minus the gradient."""
    keras.utils.set_random_seed(4)
    model = build_clip(**kwargs)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    model(data)
    before = [w.numpy() for w in model.trainable_weights]
    logs = model.fit(data, batch_size=batch_size, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0).history
    return model, before, [w.numpy() for w in model.trainable_weights], {k: v[-1] for k, v in logs.items()}


class SigLIPTest(TestCase):
    def setUp(self):
        super().setUp()
        self.data = make_data()

    def test_initialisation_evaluate_and_bias_gradient_match_numpy(self):
        model, before, after, logs = one_sgd_step(self.data, 8, loss_type="siglip", logit_bias_init=-3.0)
        paths = [w.path for w in model.trainable_weights]
        scale, bias = paths.index(model.log_logit_scale.path), paths.index(model.logit_bias.path)
        self.assertAllClose(math.exp(before[scale]), 10.0, rtol=1e-6)  # SigLIP's default scale
        self.assertAllClose(before[bias], -3.0)
        # The loss logged by the step is SigLIP's, on the embeddings before the step.
        keras.utils.set_random_seed(4)
        reference = build_clip(loss_type="siglip", logit_bias_init=-3.0)
        out = reference.predict(self.data, verbose=0)
        image, text = out["image_embeddings"].astype("float64"), out["text_embeddings"].astype("float64")
        self.assertAllClose(logs["loss"], numpy_siglip_loss(image, text, 10.0, -3.0, False).mean(), atol=1e-5)
        # d loss / d b = -1/N sum_ij z_ij sigmoid(-z_ij L_ij); SGD(1) moves b by minus that.
        logits = 10.0 * image @ text.T - 3.0
        z = 2 * np.eye(8) - 1
        grad_b = np.sum(-z / (1 + np.exp(z * logits))) / 8
        self.assertAllClose(after[bias] - before[bias], -grad_b, atol=1e-5)
        self.assertAllClose(logs["logit_bias"], after[bias], atol=1e-6)
        evaluated = model.evaluate(self.data, batch_size=8, verbose=0, return_dict=True)
        out = model.predict(self.data, verbose=0)
        expected = numpy_siglip_loss(
            out["image_embeddings"], out["text_embeddings"], model.get_logit_scale(), float(after[bias]), False
        ).mean()
        self.assertAllClose(evaluated["loss"], expected, atol=1e-5)

    def test_round_trip_export_and_mixed_precision(self):
        def build():
            model = build_clip(loss_type="siglip", chunk_size=3)
            model.compile(optimizer="adam")
            return model

        # Serving is the plain CLIP graph (embeddings): export straight after fit runs in the model zoo.
        model = build()
        model.fit(self.data, batch_size=8, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
        reloaded = self.run_serialization_test(model, self.data, export_reloaded=True)
        self.assertEqual((reloaded.loss_type, reloaded.chunk_size, reloaded.logit_bias_init), ("siglip", 3, -10.0))
        self.assertAllClose(reloaded.logit_bias.numpy(), model.logit_bias.numpy())
        self.assertNotAllClose(model.logit_bias.numpy(), -10.0)  # trained
        model, _ = self.run_mixed_precision_test(build, self.data, batch_size=8)
        self.assertEqual(keras.backend.standardize_dtype(model.logit_bias.dtype), "float32")

    def test_bad_arguments(self):
        self.assertRaisesValueError(
            ["`loss_type` must be one of", "loss_type='sigmoid'"], build_clip, loss_type="sigmoid"
        )
        self.assertRaisesValueError(
            ["`logit_bias_init` must be a finite number", "logit_bias_init=nan"], build_clip, logit_bias_init=math.nan
        )
        self.assertRaisesValueError(
            ["`chunk_size` must be a positive integer", "chunk_size=0"], build_clip, chunk_size=0
        )
        one = {k: v[:1] for k, v in self.data.items()}
        self.assertRaisesValueError("at least 2 (image, text) pairs", build_clip(loss_type="siglip").fit, one)


class ChunkedCLIPTest(TestCase):
    def test_chunked_step_equals_the_plain_step(self):
        # 7 pairs in chunks of 3 (the last holds 1); no BatchNorm in the towers.
        data = make_data(7, seed=3)
        for loss_type in ("clip", "siglip"):
            _, before, plain, plain_logs = one_sgd_step(data, 7, loss_type=loss_type)
            _, before_chunked, chunked, chunked_logs = one_sgd_step(data, 7, loss_type=loss_type, chunk_size=3)
            for a, b in zip(before, before_chunked):
                self.assertAllClose(a, b, atol=0, rtol=0)
            for a, b, start in zip(plain, chunked, before):
                self.assertAllClose(b - start, a - start, atol=1e-5, rtol=1e-5, msg=loss_type)
            self.assertGreater(max(float(np.max(np.abs(a - s))) for a, s in zip(plain, before)), 1e-3)
            for key, value in plain_logs.items():
                self.assertAllClose(chunked_logs[key], value, atol=1e-5, msg=key)

    def test_lazily_built_towers_train_chunked_by_fit_alone(self):
        keras.utils.set_random_seed(5)
        model = build_clip(chunk_size=4)
        model.compile(optimizer="adam")
        self.assertFalse(model.built)
        model.fit(make_data(), batch_size=8, epochs=1, verbose=0)
        self.assertTrue(model.built)
        keras.utils.set_random_seed(5)
        reference = build_clip()
        reference(make_data())
        self.assertLen(model.trainable_weights, len(reference.trainable_weights))
        for trained, initial in zip(model.trainable_weights, reference.trainable_weights):
            self.assertNotAllClose(trained.numpy(), initial.numpy(), msg=trained.path)

    def test_siglip_chunked_under_mirrored_strategy_equals_single_device(self):
        # The mirrored model chunks (3 rows of 4 and 3 per replica); the single-device one does not.
        out = check_mirrored_probe(self, {"loss_type": "siglip"}, {"chunk_size": 3})
        self.assertIn("logit_bias", out["mirrored"])
        self.assertAlmostEqual(out["mirrored"]["logit_bias"], out["single"]["logit_bias"], places=5)
