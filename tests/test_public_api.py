"""The public namespaces: every serializable class is registered under the package's name."""

import importlib
import inspect

import keras

from tests.test_case import PUBLIC_SUBPACKAGES as SUBPACKAGES
from tests.test_case import TestCase

# What `.keras` files serialize by registered name.
SERIALIZABLE = (
    keras.layers.Layer,
    keras.losses.Loss,
    keras.metrics.Metric,
    keras.optimizers.Optimizer,
    keras.optimizers.schedules.LearningRateSchedule,
    keras.constraints.Constraint,
    keras.initializers.Initializer,
    keras.regularizers.Regularizer,
)


def public_classes():
    """(subpackage, name, class) for every class a subpackage exports that keras_transfer defines."""
    found = []
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"keras_transfer.{sub}")
        for name in dir(module):
            value = getattr(module, name)
            if not name.startswith("_") and inspect.isclass(value) and value.__module__.startswith("keras_transfer"):
                found.append((sub, name, value))
    return found


class PublicApiTest(TestCase):
    def test_finds_the_known_classes(self):
        names = {name for _, name, _ in public_classes()}
        self.assertTrue({"SimCLR", "MetaModel", "BottleneckAdapter", "NTXent", "InversePowerDecay"} <= names, names)

    def test_every_serializable_class_is_registered_under_keras_transfer(self):
        checked = 0
        for sub, name, cls in public_classes():
            if not issubclass(cls, SERIALIZABLE):
                continue
            checked += 1
            with self.subTest(f"keras_transfer.{sub}.{name}"):
                self.assertEqual(keras.saving.get_registered_name(cls), f"keras_transfer>{cls.__name__}")
                self.assertIs(keras.saving.get_registered_object(f"keras_transfer>{cls.__name__}"), cls)
        self.assertGreaterEqual(checked, 25)
