import os

import keras
import numpy as np

from keras_transfer.models._train_step_model import TrainStepModel
from tests.test_case import TestCase


@keras.saving.register_keras_serializable(package="keras_transfer_tests")
class Regressor(TrainStepModel):
    """The smallest user of the base: a sub-model argument, a plain one, Keras's own step."""

    keras_object_args = ("body", "head")

    def __init__(self, body, head=None, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.body = body
        self.head = head
        self.scale = scale
        self.build((None, 3))

    def build(self, input_shape):
        if not self.body.built:
            self.body.build(input_shape)
        self.built = True

    def call(self, inputs, training=False):
        return self.scale * self.body(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config.update({"scale": self.scale})
        return config


@keras.saving.register_keras_serializable(package="keras_transfer_tests")
class LazyRegressor(TrainStepModel):
    """Built at its first call, as models that learn their input shapes from data."""

    def __init__(self, units=1, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units)

    def call(self, inputs):
        return self.dense(inputs)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _model(head=None):
    return Regressor(keras.layers.Dense(1, name="body"), head=head, scale=2.0)


class TrainStepModelTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(8, 3)).astype("float32")
        self.y = rng.normal(size=(8, 1)).astype("float32")

    def test_compile_builds_the_optimizer(self):
        model = _model()
        model.compile(optimizer="adam", loss="mse")
        self.assertTrue(model.optimizer.built)
        self.assertGreater(len(model.optimizer.variables), 2)  # iterations, rate, then the slots

    def test_fit_builds_the_optimizer_of_a_model_built_after_compile(self):
        model = LazyRegressor()
        model.compile(optimizer="adam", loss="mse")
        self.assertFalse(model.optimizer.built)  # nothing to build it for yet
        model(self.x[:1])
        seen = []
        callback = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: seen.append(model.optimizer.built))
        model.fit(self.x, self.y, epochs=1, batch_size=4, verbose=0, callbacks=[callback])
        # Built before the first step is traced (Keras alone builds it inside that trace).
        self.assertEqual(seen, [True])
        self.assertEqual(int(model.optimizer.iterations), 2)
        self.assertLen(model.optimizer.variables, 2 + 2 * len(model.trainable_variables))

    def test_config_serialises_the_declared_sub_models(self):
        model = _model(head=keras.layers.Dense(2, name="head"))
        config = model.get_config()
        self.assertEqual(config["body"]["class_name"], "Dense")
        self.assertEqual(config["head"]["config"]["name"], "head")
        self.assertEqual(config["scale"], 2.0)
        clone = Regressor.from_config(config)
        self.assertIsInstance(clone.body, keras.layers.Dense)
        self.assertEqual(clone.head.units, 2)
        self.assertIsNone(Regressor.from_config(_model().get_config()).head)

    def test_reloaded_model_is_compiled_with_its_optimizer_state(self):
        model = _model()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
        model.fit(self.x, self.y, epochs=1, batch_size=4, verbose=0)
        path = os.path.join(self.get_temp_dir(), "m.keras")
        model.save(path)
        reloaded = keras.saving.load_model(path)
        self.assertTrue(reloaded.compiled)
        self.assertEqual(int(reloaded.optimizer.iterations), 2)
        self.assertAllClose(reloaded.optimizer.learning_rate, 0.01)
        self.assertAllClose(reloaded.predict(self.x, verbose=0), model.predict(self.x, verbose=0))
        logs = reloaded.evaluate(self.x, self.y, verbose=0, return_dict=True)
        self.assertEqual(set(logs), {"loss", "mae"})

    def test_metrics_are_nan_once_weights_are_not_finite(self):
        # The accuracy of NaN predictions is a finite number: the base makes it NaN.
        model = _model()
        model.compile(optimizer="sgd", loss="mse", metrics=["binary_accuracy"])
        labels = (self.y > 0).astype("float32")
        self.assertTrue(np.isfinite(model.evaluate(self.x, labels, verbose=0, return_dict=True)["binary_accuracy"]))
        model.body.kernel.assign(np.full((3, 1), np.nan, "float32"))
        logs = model.evaluate(self.x, labels, verbose=0, return_dict=True)
        self.assertTrue(np.isnan(logs["binary_accuracy"]))
