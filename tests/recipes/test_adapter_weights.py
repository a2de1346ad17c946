import os

import keras
import numpy as np

from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import get_adapter_weights
from keras_transfer.recipes import load_adapter_weights
from keras_transfer.recipes import save_adapter_weights
from keras_transfer.recipes import set_adapter_weights
from tests.recipes.adapter_models import compiled
from tests.recipes.adapter_models import tiny_cnn
from tests.test_case import TestCase


class TaskSwitchTest(TestCase):
    def test_save_load_and_switch_without_rebuild(self):
        base = tiny_cnn()
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(8, 8, 8, 3)).astype("float32")
        y_a, y_b = rng.integers(0, 3, 8), rng.integers(0, 3, 8)
        model = compiled(add_adapters(base, keras.layers.Conv2D, "conv_series", train_batchnorm=True))
        initial = get_adapter_weights(model)
        self.assertIn("backbone/conv1_adapter/alpha", initial)
        self.assertIn("backbone/bn1/moving_mean", initial)
        self.assertNotIn("backbone/conv1/kernel", initial)
        model.fit(x, y_a, epochs=3, verbose=0)
        out_a = model.predict(x, verbose=0)
        path_a = save_adapter_weights(model, os.path.join(self.get_temp_dir(), "task_a.npz"))
        frozen = model.get_layer("backbone").get_layer("conv1").kernel.numpy().copy()
        set_adapter_weights(model, initial)
        self.assertAllClose(model.predict(x, verbose=0), base.predict(x, verbose=0), atol=1e-6)
        model.fit(x, y_b, epochs=3, verbose=0)
        out_b = model.predict(x, verbose=0)
        predict_function = model.predict_function
        load_adapter_weights(model, path_a)
        self.assertAllClose(model.predict(x, verbose=0), out_a, atol=1e-6)
        self.assertIs(model.predict_function, predict_function)  # no rebuild, no retrace
        self.assertNotAllClose(out_a, out_b, atol=1e-4)
        self.assertAllClose(model.get_layer("backbone").get_layer("conv1").kernel, frozen, atol=0, rtol=0)
        size = os.path.getsize(path_a)
        self.assertLess(size, 8 * sum(v.size for v in get_adapter_weights(model).values()) + 4096)

    def test_errors(self):
        model = add_adapters(tiny_cnn(), keras.layers.Conv2D, "conv_series")
        weights = get_adapter_weights(model)
        missing = dict(weights)
        missing.pop("head/bias")
        self.assertRaisesValueError(["missing ['head/bias']"], set_adapter_weights, model, missing)
        extra = dict(weights, **{"nope/w": np.zeros(1)})
        self.assertRaisesValueError(["unexpected ['nope/w']"], set_adapter_weights, model, extra)
        bad = dict(weights, **{"head/bias": np.zeros(5)})
        self.assertRaisesValueError(["'head/bias' must have shape (3,)", "(5,)"], set_adapter_weights, model, bad)
        self.assertRaisesValueError("must end with '.npz'", save_adapter_weights, model, "task.h5")
