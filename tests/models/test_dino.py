"""DINO: self-distillation with a momentum teacher, a centre and sharpened targets.

NaN batches and the mixed_float16 step are checked for DINO by the zoo-wide tests
(tests/reliability/test_mixed_precision.py; NaN: test_resume.py, entry "DINO" in tests/model_zoo.py), export after fit
by tests/reliability/test_resume.py; the MirroredStrategy check (global-batch centre)
runs in tests/models/_two_view_distributed_probe.py.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.models import DINO
from tests.losses.test_dino_loss import numpy_dino
from tests.models.test_simclr import make_encoder
from tests.models.test_simclr import make_pairs
from tests.models.test_simclr import pairs_dataset
from tests.test_case import TestCase

SMALL = {"out_dim": 6, "hidden_dim": 5, "bottleneck_dim": 3}


def numpy_tau(base, step, total):
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(step / total, 1.0)) + 1.0) / 2.0


def build(encoder=None, **kwargs):
    model = DINO(encoder or make_encoder(), **{**SMALL, "momentum": 0.9, "total_steps": 6, **kwargs})
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


class DINOTest(TestCase):
    def test_loss_center_and_teacher_match_numpy(self):
        v1, v2 = make_pairs(8)
        model = build(warmup_teacher_temperature=0.02, warmup_steps=4)
        targets = model.teacher_encoder.weights + model.teacher_head.weights
        onlines = model.encoder.weights + model.head.weights
        for step in range(3):
            center = model.center.numpy()
            before = [v.numpy() for v in targets]
            student = [model.head(model.encoder(v, training=True)).numpy() for v in (v1, v2)]
            teacher = [model.teacher_head(model.teacher_encoder(v, training=True)).numpy() for v in (v1, v2)]
            temperature = 0.02 + (0.04 - 0.02) * min(step / 4, 1.0)
            self.assertAllClose(model.teacher_temperature_at(step), temperature, atol=1e-7)
            expected = numpy_dino(student, teacher, center, 0.1, temperature)
            logs = model.fit(pairs_dataset(v1, v2, 8), epochs=1, verbose=0).history
            # No BatchNorm in the encoder: the logged loss is the loss of the weights before the step.
            self.assertAllClose(logs["loss"][0], expected, atol=1e-5, rtol=1e-5, msg=f"step {step}")
            batch_mean = np.concatenate(teacher).mean(axis=0)
            self.assertAllClose(model.center, 0.9 * center + 0.1 * batch_mean, atol=1e-6, msg=f"step {step}")
            tau = numpy_tau(0.9, step, 6)
            self.assertAllClose(model.teacher_momentum(step), tau, atol=1e-7)
            for target, online, old in zip(targets, onlines, before):
                expected_w = tau * old + (1 - tau) * online.numpy() if online.trainable else target.numpy()
                self.assertAllClose(target, expected_w, atol=1e-6, rtol=1e-6, msg=f"step {step} {target.path}")
        self.assertGreater(float(np.abs(model.center.numpy()).max()), 1e-3)  # not vacuous
        # The teacher entropy: the mean entropy of softmax((t - c) / tau_t) over views and examples.
        result = model.evaluate(pairs_dataset(v1, v2, 8), verbose=0, return_dict=True)
        teacher = np.stack([model.teacher_head(model.teacher_encoder(v)).numpy() for v in (v1, v2)])
        logits = (teacher - model.center.numpy()) / float(model.teacher_temperature_at(3))
        q = np.exp(logits - logits.max(-1, keepdims=True))
        q /= q.sum(-1, keepdims=True)
        self.assertAllClose(result["teacher_entropy"], np.mean(-np.sum(q * np.log(q), -1)), atol=1e-5)

    def test_only_student_weights_get_gradients(self):
        v1, v2 = make_pairs(8)
        model = build()
        teacher = model.teacher_encoder.weights + model.teacher_head.weights
        self.assertFalse({id(v) for v in teacher} & {id(v) for v in model.trainable_variables})
        self.assertFalse(model.center.trainable)
        with tf.GradientTape(persistent=True) as tape:
            loss = model.step_loss((tf.constant(v1), tf.constant(v2)), training=True)[0]
        for variable in teacher + [model.center]:
            self.assertIsNone(tape.gradient(loss, variable), variable.path)
        for variable in model.trainable_variables:
            self.assertIsNotNone(tape.gradient(loss, variable), variable.path)

    def test_gradients_match_finite_differences(self):
        keras.utils.set_random_seed(1)
        encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh")])
        model = DINO(encoder, out_dim=4, hidden_dim=3, bottleneck_dim=2, num_layers=2, student_temperature=0.5,
                     teacher_temperature=0.2)  # fmt: skip
        rng = np.random.default_rng(3)
        for variable in model.head.weights:  # the 0.02-std init leaves a tiny bottleneck: steep normalisation
            variable.assign(rng.normal(size=variable.shape))
        model.teacher_encoder.set_weights([w + 0.3 for w in model.teacher_encoder.get_weights()])
        model.center.assign([0.1, -0.2, 0.0, 0.3])
        x = np.random.default_rng(2).normal(size=(2, 5, 4)).astype("float32")
        teacher = [model.teacher_head(model.teacher_encoder(v)).numpy() for v in x]

        def fixed_teacher_loss():
            student = [model.head(model.encoder(v)).numpy() for v in x]
            return float(numpy_dino(student, teacher, model.center.numpy(), 0.5, 0.2))

        variables = [model.encoder.weights[0], model.head.layers[0].prototypes]
        with tf.GradientTape() as tape:
            loss = model.step_loss(tuple(tf.constant(v) for v in x), training=False)[0]
        self.assertAllClose(loss, fixed_teacher_loss(), atol=1e-5)
        for variable, grad in zip(variables, tape.gradient(loss, variables)):
            value = variable.numpy()
            numeric = np.zeros_like(value)
            for index in np.ndindex(value.shape):
                shifted = []
                for eps in (5e-3, -5e-3, 1e-2, -1e-2):
                    moved = value.copy()
                    moved[index] += eps
                    variable.assign(moved)
                    shifted.append(fixed_teacher_loss())
                # Richardson extrapolation of central differences (float32 forward passes).
                numeric[index] = (4 * (shifted[0] - shifted[1]) / 1e-2 - (shifted[2] - shifted[3]) / 2e-2) / 3
            variable.assign(value)
            self.assertGreater(float(np.abs(numeric).max()), 1e-3)
            self.assertAllClose(grad, numeric, atol=2e-4, rtol=1e-2, msg=variable.path)

    def test_fit_save_resume(self):
        # export() straight after fit (and from a fresh process) runs for the zoo entry "DINO":
        # tests/reliability/test_resume.py.
        v1, v2 = make_pairs(8)
        data = pairs_dataset(v1, v2, 4)
        model = build(warmup_teacher_temperature=0.02, warmup_steps=3)
        self.run_fit_test(model, data)  # the student moves by the optimizer, the teacher by the EMA (no slots)
        self.assertFalse([v.path for v in model.optimizer.variables if "teacher" in v.path])
        reloaded = self.run_serialization_test(model, v1)
        self.assertAllClose(model.predict(v1, verbose=0), model.encoder(v1), atol=1e-6)
        for key, value in model.get_config().items():
            if not isinstance(value, dict):
                self.assertEqual(reloaded.get_config()[key], value, key)
        self.assertAllClose(reloaded.center, model.center, atol=0, rtol=0)
        self.assertEqual(int(reloaded.optimizer.iterations), 2)
        self.assertFalse(
            [v.path for v in reloaded.teacher_head.weights + reloaded.teacher_encoder.weights if v.trainable]
        )
        # 4 more steps: the momentum, the temperature warm-up and the centre continue from step 2.
        histories = [m.fit(data, epochs=2, verbose=0).history for m in (model, reloaded)]
        self.assertEqual(histories[0], histories[1])
        for a, b in zip(model.weights, reloaded.weights):
            self.assertAllClose(b, a, atol=1e-6, rtol=1e-6, msg=a.path)

    def test_bad_arguments_and_data(self):
        encoder = make_encoder()
        for name in ("out_dim", "hidden_dim", "bottleneck_dim", "num_layers", "total_steps"):
            for value in (0, -2):
                self.assertRaisesValueError(
                    [f"`{name}`", f"{name}={value}", "positive"], DINO, encoder, **{name: value}
                )
        for name in ("student_temperature", "teacher_temperature", "warmup_teacher_temperature"):
            self.assertRaisesValueError(
                [f"`{name}`", f"{name}=0.0", "The paper uses"], DINO, encoder, **{name: 0.0, "warmup_steps": 5}
            )
        for name, value in (("teacher_temperature", 0.1), ("warmup_teacher_temperature", 0.2)):
            self.assertRaisesValueError(
                [f"`{name}` must be below `student_temperature`", f"{name}={value}", "teacher_temperature=0.04"],
                DINO,
                encoder,
                **{name: value, "warmup_steps": 5},
            )
        self.assertRaisesValueError(
            ["`warmup_steps`", "warmup_steps=None", "Pass the warm-up"], DINO, encoder, warmup_teacher_temperature=0.02
        )
        for name in ("momentum", "center_momentum"):
            for value in (1.0, -0.1, float("nan")):
                self.assertRaisesValueError(
                    [f"`{name}`", f"{name}={value}", "[0, 1)", "The paper uses"], DINO, encoder, **{name: value}
                )
        self.assertRaisesValueError(["`head`", "str"], DINO, encoder, head="mlp")
        self.assertRaisesValueError(["`encoder`", "unbuilt"], DINO, keras.Sequential([keras.layers.Dense(2)]))
        v1, _ = make_pairs(4)
        model = build()
        self.assertRaisesValueError(["no `augmenter`", "simclr_dataset"], model.fit, v1, batch_size=4, verbose=0)
        self.assertRaisesValueError(["two views", "3 tensors"], model.fit, (v1, v1, v1), batch_size=4, verbose=0)
        self.assertRaisesValueError(["rank 4", "view_1.shape"], model.fit, (v1[..., 0], v1[..., 0]), verbose=0)
