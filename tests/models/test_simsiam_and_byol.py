"""SimSiam and BYOL: two-view pre-training with a predictor, on the shared `PredictivePretext` base."""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.models import BYOL
from keras_transfer.models import SimSiam
from tests.losses.test_byol_loss import numpy_byol
from tests.losses.test_simsiam_loss import numpy_simsiam
from tests.models.test_simclr import assert_nan_is_reported
from tests.models.test_simclr import make_encoder
from tests.models.test_simclr import make_pairs
from tests.models.test_simclr import nan_hiding_encoder
from tests.models.test_simclr import pairs_dataset
from tests.test_case import TestCase
from tests.test_case import run_probe

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = {"simsiam": (SimSiam, {}), "byol": (BYOL, {"momentum": 0.9, "total_steps": 6})}


def tiny_linear(cls, **kwargs):
    """Dense encoder and heads (no BatchNorm, no ReLU kinks): smooth enough for finite differences."""
    keras.utils.set_random_seed(1)
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh")])
    projection = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    prediction = keras.Sequential([keras.Input((3,)), keras.layers.Dense(3)])
    return cls(encoder, projection_head=projection, prediction_head=prediction, **kwargs)


def numpy_tau(base, step, total):
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step / total, 1.0)) + 1.0) / 2.0


class SimSiamAndBYOLTest(TestCase):
    def build(self, name, encoder=None, **kwargs):
        cls, defaults = MODELS[name]
        model = cls(encoder or make_encoder(), projection_dim=4, **{**defaults, **kwargs})
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        return model

    def test_loss_matches_numpy(self):
        v1, v2 = make_pairs(8)
        for name in MODELS:
            model = self.build(name)
            model.fit(pairs_dataset(v1, v2, 8), epochs=2, verbose=0)  # BYOL's target now differs from the online
            z1, z2 = (model.projection_head(model.encoder(v)).numpy() for v in (v1, v2))
            p1, p2 = model.prediction_head(z1).numpy(), model.prediction_head(z2).numpy()
            if name == "byol":
                t1, t2 = (model.target_projection_head(model.target_encoder(v)).numpy() for v in (v1, v2))
                self.assertGreater(np.abs(t1 - z1).max(), 1e-4)
                expected = numpy_byol(p1, p2, t1, t2)
            else:
                expected = numpy_simsiam(p1, p2, z1, z2)
            result = model.evaluate(pairs_dataset(v1, v2, 8), verbose=0, return_dict=True)
            self.assertEqual(set(result), {"loss", "projection_std"})
            self.assertAllClose(result["loss"], expected, atol=1e-5, rtol=1e-5, msg=name)
            normalized = [z / np.linalg.norm(z, axis=1, keepdims=True) for z in (z1, z2)]
            spread = np.mean([n.std(axis=0).mean() for n in normalized])
            self.assertAllClose(result["projection_std"], spread, atol=1e-5, msg=name)

    def test_ema_update_and_cosine_schedule_match_numpy(self):
        v1, v2 = make_pairs(8)
        model = self.build("byol", momentum=0.9, total_steps=2)
        targets = model.target_encoder.weights + model.target_projection_head.weights
        onlines = model.encoder.weights + model.projection_head.weights
        rng = np.random.default_rng(0)
        for variable in targets:  # start the target away from the online network
            variable.assign(variable.numpy() + rng.normal(size=variable.shape).astype("float32"))
        for step in range(3):
            before = [v.numpy() for v in targets]
            model.fit(pairs_dataset(v1, v2, 8), epochs=1, verbose=0)
            tau = numpy_tau(0.9, step, 2)  # 0.9, 0.95, then 1 (the schedule's end)
            self.assertAllClose(model.target_momentum(step), tau, atol=1e-7)
            for target, online, old in zip(targets, onlines, before):
                expected = tau * old + (1 - tau) * online.numpy() if online.trainable else target.numpy()
                self.assertAllClose(target, expected, atol=1e-6, rtol=1e-6, msg=f"step {step} {target.path}")
        self.assertAllClose(BYOL(make_encoder(), momentum=0.5).target_momentum(10**6), 0.5)  # constant

    def test_only_online_weights_get_gradients(self):
        v1, v2 = make_pairs(8)
        model = self.build("byol")
        target_ids = {id(v) for v in model.target_encoder.weights + model.target_projection_head.weights}
        self.assertFalse(target_ids & {id(v) for v in model.trainable_variables})
        with tf.GradientTape(persistent=True) as tape:
            loss = model.step_loss((tf.constant(v1), tf.constant(v2)), training=True)[0]
        for variable in model.target_encoder.weights + model.target_projection_head.weights:
            self.assertIsNone(tape.gradient(loss, variable), variable.path)
        for variable in model.trainable_variables:
            self.assertIsNotNone(tape.gradient(loss, variable), variable.path)
        # One step: the online network moves by the optimizer, the target by the EMA (no optimizer slots).
        self.run_fit_test(model, pairs_dataset(v1, v2, 8))
        slots = {v.path for v in model.optimizer.variables}
        self.assertFalse([p for p in slots if "target" in p])

    def test_gradients_match_finite_differences(self):
        x = np.random.default_rng(2).normal(size=(2, 6, 4)).astype("float32")
        for cls in (SimSiam, BYOL):
            model = tiny_linear(cls)
            # Targets held at their current values: what the stop-gradient differentiates.
            z1, z2 = (model.embed(v, False).numpy() for v in x)
            if cls is BYOL:  # a target away from the online network
                model.target_encoder.set_weights([w + 0.1 for w in model.target_encoder.get_weights()])
                z1, z2 = (model.target_projection_head(model.target_encoder(v)).numpy() for v in x)

            def fixed_target_loss():
                p1, p2 = (model.branch(v, False)[1] for v in x)
                terms = numpy_simsiam(p1, p2, z1, z2) if cls is SimSiam else numpy_byol(p1, p2, z1, z2)
                return float(terms)

            variables = [model.encoder.weights[0], model.prediction_head.weights[0]]
            with tf.GradientTape() as tape:
                loss = model.step_loss(tuple(tf.constant(v) for v in x), training=False)[0]
            self.assertAllClose(loss, fixed_target_loss(), atol=1e-5)
            for variable, grad in zip(variables, tape.gradient(loss, variables)):
                value = variable.numpy()

                def central(index, eps, variable=variable, value=value):
                    shifted = []
                    for sign in (1, -1):
                        moved = value.copy()
                        moved[index] += sign * eps
                        variable.assign(moved)
                        shifted.append(fixed_target_loss())
                    return (shifted[0] - shifted[1]) / (2 * eps)

                numeric = np.zeros_like(value)
                for index in np.ndindex(value.shape):
                    # Richardson extrapolation of central differences: O(eps^4), float32 noise / eps small.
                    numeric[index] = (4 * central(index, 5e-3) - central(index, 1e-2)) / 3
                variable.assign(value)
                self.assertAllClose(grad, numeric, atol=2e-4, rtol=1e-2, msg=f"{cls.__name__} {variable.path}")

    def test_fit_save_and_export_after_reload(self):
        # The generic checks run for both models in the model zoo: a killed run resumed (and its
        # `.keras` file reloaded and fit on) ends as the uninterrupted run, the cosine schedule
        # included (tests/reliability/test_resume.py); export straight after fit
        # (tests/reliability/test_resume.py); one mixed-precision step with float32
        # outputs and NaN inputs under TerminateOnNaN (tests/reliability/test_mixed_precision.py; NaN: test_resume.py).
        v1, v2 = make_pairs(8)
        data = pairs_dataset(v1, v2, 4)
        for name in MODELS:
            model = self.build(name)
            self.run_fit_test(model, data)
            reloaded = self.run_serialization_test(model, v1, export_reloaded=True)
            for key, value in model.get_config().items():
                if not isinstance(value, dict):
                    self.assertEqual(reloaded.get_config()[key], value, key)
            if name == "byol":
                for a, b in zip(model.target_encoder.weights, reloaded.target_encoder.weights):
                    self.assertAllClose(b, a, atol=0, rtol=0, msg=a.path)
                    self.assertFalse(b.trainable)
            self.assertAllClose(model.predict(v1, verbose=0), model.encoder.predict(v1, verbose=0))

    def test_nan_is_reported_and_mixed_precision_dtypes(self):
        # A NaN the forward pass hides (max pooling): the loss stays finite while the weights break.
        v1, v2 = make_pairs(16)
        bad = v1.copy()
        bad[0, 0, 0, 0] = np.nan
        for name in MODELS:
            assert_nan_is_reported(
                self,
                lambda name=name: self.build(name, encoder=nan_hiding_encoder()),
                pairs_dataset(bad, v2, 8),
                pairs_dataset(v1, v2, 8),
            )
        keras.config.set_dtype_policy("mixed_float16")  # tearDown restores float32
        for name in MODELS:
            model = self.build(name)
            self.assertEqual(model.encoder.compute_dtype, "float16")
            self.assertEqual(model.prediction_head.compute_dtype, "float16")

    def test_bad_arguments_and_data(self):
        encoder = make_encoder()
        for momentum in (1.0, -0.1, float("nan")):
            self.assertRaisesValueError(["`momentum`", f"momentum={momentum}"], BYOL, encoder, momentum=momentum)
        self.assertRaisesValueError(["`total_steps`", "total_steps=0"], BYOL, encoder, total_steps=0)
        for cls in (SimSiam, BYOL):
            for dim in (0, -3):
                self.assertRaisesValueError(
                    ["`prediction_hidden_dim`", f"prediction_hidden_dim={dim}"], cls, encoder, prediction_hidden_dim=dim
                )
            self.assertRaisesValueError(["`projection_dim`", "projection_dim=0"], cls, encoder, projection_dim=0)
            self.assertRaisesValueError(
                ["`projection_hidden_dim`", "projection_hidden_dim=0"], cls, encoder, projection_hidden_dim=0
            )
            self.assertRaisesValueError(["`prediction_head`", "str"], cls, encoder, prediction_head="mlp")
            self.assertRaisesValueError(["`encoder`", "unbuilt"], cls, keras.Sequential([keras.layers.Dense(2)]))
        v1, _ = make_pairs(4)
        for name in MODELS:
            model = self.build(name)
            self.assertRaisesValueError(["no `augmenter`", "simclr_dataset"], model.fit, v1, batch_size=4, verbose=0)
            self.assertRaisesValueError(["two views", "3 tensors"], model.fit, (v1, v1, v1), batch_size=4, verbose=0)

    def test_step_under_mirrored_strategy_equals_single_device(self):
        # One probe process for the five two-view models without negatives (it starts TensorFlow with
        # two logical CPUs): a step on a global batch of 8 split 4 + 4 equals the step on one device.
        # SimSiam and BYOL keep their default BatchNorm heads (synchronized in the strategy's scope);
        # BYOL's target network, moved by the EMA after the step, must agree as well.
        result = run_probe(os.path.join(HERE, "_two_view_distributed_probe.py"))
        self.assertEqual(sorted(result), ["barlow_twins", "byol", "dino", "simsiam", "vicreg"])
        for name, case in result.items():
            self.assertEqual(case["replicas"], 2)
            self.assertLess(case["max_weight_difference"], 1e-5, name)
            self.assertGreater(case["max_weight_movement"], 1e-3, name)  # not vacuous
            self.assertAlmostEqual(case["mirrored_loss"], case["single_loss"], places=4, msg=name)
        self.assertLess(result["byol"]["max_target_difference"], 1e-5)
        self.assertGreater(result["byol"]["max_target_movement"], 1e-3)
        # DINO: the centre follows the GLOBAL batch mean.
        dino = result["dino"]
        self.assertLess(dino["max_center_difference"], 1e-6)
        self.assertGreater(dino["max_center_movement"], 1e-2)
        self.assertAlmostEqual(dino["mirrored_loss"], dino["single_loss"], places=5)
