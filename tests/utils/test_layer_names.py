import doctest

import keras

from keras_transfer.utils import layer_names
from keras_transfer.utils.layer_names import LayerNames
from tests.test_case import TestCase


class LayerNamesTest(TestCase):
    def test_names_of_layers_and_sub_models_are_taken(self):
        inner = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="dense")], name="inner")
        inputs = keras.Input((2,), name="x")
        outputs = keras.layers.Dense(1, name="head")(inner(inputs))
        names = LayerNames(keras.Model(inputs, outputs, name="outer"))
        self.assertEqual(names.unique("dense"), "dense_2")  # a nested leaf layer
        self.assertEqual(names.unique("inner"), "inner_2")  # a sub-model
        self.assertEqual(names.unique("head"), "head_2")
        self.assertEqual(names.unique("head"), "head_3")  # handed-out names are taken too
        self.assertEqual(names.unique("adapter"), "adapter")
        self.assertEqual(names.unique("adapter"), "adapter_2")

    def test_docstring_example(self):
        results = doctest.testmod(layer_names, optionflags=doctest.NORMALIZE_WHITESPACE)
        self.assertEqual(results.failed, 0)
        self.assertGreater(results.attempted, 0)
