import os

import keras
import numpy as np

from keras_transfer.optimizers import discriminative_optimizer
from keras_transfer.optimizers.discriminative import DiscriminativeAdam
from keras_transfer.optimizers.discriminative import DiscriminativeAdamW
from keras_transfer.optimizers.discriminative import DiscriminativeSGD
from tests.test_case import TestCase

RNG = np.random.default_rng(0)
W_SLOW = RNG.normal(size=(3, 2)).astype("float32")
W_FAST = RNG.normal(size=(4,)).astype("float32")
GRADS = [(RNG.normal(size=(3, 2)).astype("float32"), RNG.normal(size=(4,)).astype("float32")) for _ in range(3)]


def _variables():
    return [keras.Variable(W_SLOW, name="slow_kernel"), keras.Variable(W_FAST, name="fast_bias")]


def _run(optimizer, variables, steps=3):
    for g_slow, g_fast in GRADS[:steps]:
        optimizer.apply([keras.ops.convert_to_tensor(g_slow), keras.ops.convert_to_tensor(g_fast)], variables)
    return [v.numpy() for v in variables]


class DiscriminativeStepTest(TestCase):
    def test_sgd_matches_numpy(self):
        lr, m = 0.5, 0.1
        opt = DiscriminativeSGD(learning_rate=lr, learning_rate_multipliers=[("^slow", m)])
        slow, fast = _run(opt, _variables(), steps=1)
        self.assertAllClose(slow, W_SLOW - lr * m * GRADS[0][0], atol=1e-6)
        self.assertAllClose(fast, W_FAST - lr * GRADS[0][1], atol=1e-6)

    def test_momentum_sgd_equals_sgd_with_scaled_rate(self):
        lr, m = 0.2, 0.25
        opt = DiscriminativeSGD(learning_rate=lr, momentum=0.9, learning_rate_multipliers=[("^slow", m)])
        slow, fast = _run(opt, _variables())
        ref_slow = _run(keras.optimizers.SGD(lr * m, momentum=0.9), _variables())[0]
        ref_fast = _run(keras.optimizers.SGD(lr, momentum=0.9), _variables())[1]
        self.assertAllClose(slow, ref_slow, atol=1e-6)
        self.assertAllClose(fast, ref_fast, atol=1e-6)

    def test_adam_equals_adam_with_scaled_rate(self):
        lr, m = 0.01, 0.1
        opt = DiscriminativeAdam(learning_rate=lr, learning_rate_multipliers=[("^slow", m), ("kernel", 5.0)])
        slow, fast = _run(opt, _variables())
        # First matching pattern wins: "slow_kernel" gets 0.1, not 5.0.
        ref_slow = _run(keras.optimizers.Adam(lr * m), _variables())[0]
        ref_fast = _run(keras.optimizers.Adam(lr), _variables())[1]
        self.assertAllClose(slow, ref_slow, atol=1e-6)
        self.assertAllClose(fast, ref_fast, atol=1e-6)
        # Written out (Kingma & Ba, one step): the first Adam step moves each weight by ~lr * m * sign(g).
        first = _run(
            DiscriminativeAdam(learning_rate=lr, learning_rate_multipliers=[("^slow", m)]), _variables(), steps=1
        )[0]
        g = GRADS[0][0]
        eps = 1e-7
        self.assertAllClose(first, W_SLOW - lr * m * g / (np.abs(g) + eps * np.sqrt(1 - 0.999)), atol=1e-6)

    def test_adamw_decays_at_base_rate(self):
        lr, m, wd = 0.01, 0.1, 0.05
        opt = DiscriminativeAdamW(learning_rate=lr, weight_decay=wd, learning_rate_multipliers=[("^slow", m)])
        slow = _run(opt, _variables())[0]
        # AdamW(lr * m) decays by (lr * m) * weight_decay: pass wd / m to decay at the base rate.
        ref = _run(keras.optimizers.AdamW(lr * m, weight_decay=wd / m), _variables())[0]
        self.assertAllClose(slow, ref, atol=1e-6)

    def test_zero_multiplier_freezes(self):
        opt = DiscriminativeAdam(learning_rate=0.1, learning_rate_multipliers=[("fast", 0)])
        fast = _run(opt, _variables())[1]
        self.assertAllClose(fast, W_FAST, atol=0, rtol=0)
        self.assertEqual(opt.multiplier_for(keras.Variable(1.0, name="other")), 1.0)

    def test_factory(self):
        base = keras.optimizers.Adam(learning_rate=0.003, beta_1=0.8)
        opt = discriminative_optimizer(base, [("^a", 0.5)])
        self.assertIsInstance(opt, DiscriminativeAdam)
        self.assertIsInstance(opt, keras.optimizers.Adam)
        self.assertAllClose(opt.learning_rate, 0.003)
        self.assertAlmostEqual(opt.beta_1, 0.8)
        self.assertEqual(opt.learning_rate_multipliers, [("^a", 0.5)])
        again = discriminative_optimizer(opt, [("^b", 0.2)])
        self.assertIsInstance(again, DiscriminativeAdam)
        self.assertEqual(again.learning_rate_multipliers, [("^b", 0.2)])
        self.assertIsInstance(discriminative_optimizer("sgd", []), DiscriminativeSGD)
        config = opt.get_config()
        self.assertEqual(config["learning_rate_multipliers"], [["^a", 0.5]])
        self.assertEqual(DiscriminativeAdam.from_config(config).learning_rate_multipliers, [("^a", 0.5)])

    def test_errors(self):
        self.assertRaisesValueError(
            ["regular expressions", "'('"], DiscriminativeSGD, learning_rate_multipliers=[("(", 0.1)]
        )
        self.assertRaisesValueError(
            ["`multiplier`", "multiplier=-0.5"], DiscriminativeSGD, learning_rate_multipliers=[("a", -0.5)]
        )
        self.assertRaisesValueError(
            ["`multiplier`", "nan"], DiscriminativeSGD, learning_rate_multipliers=[("a", float("nan"))]
        )
        self.assertRaisesValueError(
            ["(regex, multiplier) pairs", "'a'"], DiscriminativeSGD, learning_rate_multipliers=["a"]
        )

        class Custom(keras.optimizers.SGD):
            pass

        self.assertRaisesValueError(["`optimizer`", "Adam"], discriminative_optimizer, Custom(), [])


class DiscriminativeModelTest(TestCase):
    @classmethod
    def setUpClass(cls):
        rng = np.random.default_rng(1)
        cls.x = rng.normal(size=(8, 4)).astype("float32")
        cls.y = rng.normal(size=(8, 2)).astype("float32")

    def build(self, multipliers):
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(3, name="body")(inputs)
        outputs = keras.layers.Dense(2, name="head")(hidden)
        model = keras.Model(inputs, outputs)
        model.compile(DiscriminativeAdam(learning_rate=0.01, learning_rate_multipliers=multipliers), "mse")
        return model

    def test_fit_and_keras_round_trip(self):
        model = self.build([("^body/", 0.0)])
        body = model.get_layer("body")
        self.run_fit_test(model, self.x, self.y, batch_size=8, frozen=[body], unchanged_ok=body.weights)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)  # no custom_objects
        self.assertIsInstance(reloaded.optimizer, DiscriminativeAdam)
        self.assertEqual(reloaded.optimizer.learning_rate_multipliers, [("^body/", 0.0)])
        self.assertAllClose(reloaded.predict(self.x, verbose=0), model.predict(self.x, verbose=0))
        # Training continues with the restored multipliers: "body" still does not move.
        before = reloaded.get_layer("body").kernel.numpy().copy()
        reloaded.fit(self.x, self.y, epochs=1, verbose=0)
        self.assertAllClose(reloaded.get_layer("body").kernel.numpy(), before, atol=0, rtol=0)

    def test_mixed_precision(self):
        model, _ = self.run_mixed_precision_test(lambda: self.build([("^body/", 0.5)]), self.x, self.y, batch_size=8)
        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        self.assertIsInstance(model.optimizer.inner_optimizer, DiscriminativeAdam)
