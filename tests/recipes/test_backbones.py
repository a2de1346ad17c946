import os
import time
from unittest import mock

import keras
import numpy as np

from keras_transfer.recipes import BACKBONES
from keras_transfer.recipes import available_backbones
from keras_transfer.recipes import backbone_blocks
from keras_transfer.recipes import get_spec
from keras_transfer.recipes import load_backbone
from keras_transfer.recipes.backbones import BackboneSpec
from keras_transfer.utils.network import OfflineError
from tests.test_case import TestCase


class RegistryTest(TestCase):
    def test_families_covered(self):
        names = available_backbones()
        for required in (
            "mobilenet_v2",
            "mobilenet_v3_small",
            "efficientnet_b0",
            "efficientnet_v2_b0",
            "resnet50",
            "resnet50_v2",
            "convnext_tiny",
            "densenet121",
            "xception",
            "vgg16",
            "simple_cnn",
        ):
            self.assertIn(required, names)
        for spec in BACKBONES.values():
            if spec.constructor != "simple_cnn":
                self.assertTrue(hasattr(keras.applications, spec.constructor), spec.constructor)
            self.assertIn(spec.preprocess, ("tf", "caffe", "torch", "unit", "none"))
            self.assertTrue(spec.block_key or spec.block_end, spec.name)

    def test_unknown_name_suggests(self):
        self.assertRaisesValueError(
            ["`backbone`", "Received: backbone='resnet5'", "Did you mean", "'resnet50'", "Available:"],
            get_spec,
            "resnet5",
        )
        message = self.assertRaisesValueError(["backbone=42"], load_backbone, 42)
        self.assertNotIn("Did you mean", message)


class LoadBackboneTest(TestCase):
    def test_simple_cnn(self):
        model = load_backbone("simple_cnn", (16, 16, 1))
        self.assertEqual(model.output_shape, (None, 4, 4, 64))
        self.assertEqual(model.input_shape, (None, 16, 16, 1))

    def test_keras_applications_backbone_matches_keras(self):
        model = load_backbone("mobilenet_v3_small", (32, 32, 3))
        reference = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3))
        self.assertEqual(model.output_shape, reference.output_shape)
        self.assertEqual(model.count_params(), reference.count_params())

    def test_local_weights_file_round_trip(self):
        path = os.path.join(self.get_temp_dir(), "backbone.weights.h5")
        for name, shape in (("simple_cnn", (16, 16, 3)), ("mobilenet_v3_small", (32, 32, 3))):
            source = load_backbone(name, shape)
            for v in source.weights:  # make the saved values distinguishable from a fresh init
                v.assign(np.random.default_rng(0).normal(size=v.shape).astype(v.dtype) * 0.01 + v.numpy())
            source.save_weights(path)
            loaded = load_backbone(name, shape, weights=path)
            self.assertEqual(len(loaded.weights), len(source.weights))
            for a, b in zip(source.weights, loaded.weights):
                self.assertAllClose(b, a, atol=0, rtol=0, msg=f"{name}: {a.path}")

    def test_offline_imagenet_error(self):
        cache = self.get_temp_dir()
        env = {"KERAS_TRANSFER_OFFLINE": "1", "KERAS_HOME": cache}
        with mock.patch.dict(os.environ, env):
            start = time.perf_counter()
            with self.assertRaises(OfflineError) as ctx:
                load_backbone("mobilenet_v3_small", (32, 32, 3), weights="imagenet")
            elapsed = time.perf_counter() - start
        message = str(ctx.exception)
        self.assertLess(elapsed, 10.0)
        self.assertIn("weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", message)
        self.assertIn(os.path.join(cache, "models"), message)
        self.assertIn("weights=None", message)
        self.assertIn("local file", message)
        self.assertIsInstance(ctx.exception, OSError)

    def test_bad_arguments(self):
        self.assertRaisesValueError(
            ["at least 32x32", "'mobilenet_v3_small'", "(16, 16, 3)"], load_backbone, "mobilenet_v3_small", (16, 16, 3)
        )
        self.assertRaisesValueError(["at least 71x71", "(64, 64, 3)"], load_backbone, "xception", (64, 64, 3))
        self.assertRaisesValueError(["`input_shape`", "(32, 32)"], load_backbone, "simple_cnn", (32, 32))
        self.assertRaisesValueError(
            ["`weights`", "/no/such/file.h5"], load_backbone, "simple_cnn", (16, 16, 3), weights="/no/such/file.h5"
        )
        self.assertRaisesValueError(["`weights`", "weights=3"], load_backbone, "simple_cnn", (16, 16, 3), weights=3)
        self.assertRaisesValueError(
            ["no ImageNet weights", "'simple_cnn'"], load_backbone, "simple_cnn", (16, 16, 3), weights="imagenet"
        )
        self.assertRaisesValueError(
            ["3 channels", "(32, 32, 1)"], load_backbone, "mobilenet_v3_small", (32, 32, 1), weights="imagenet"
        )


class BackboneBlocksTest(TestCase):
    def check_partition(self, model, blocks):
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        flat = [layer for group in blocks.values() for layer in group]
        # Every layer in exactly one block, in model order.
        self.assertEqual([id(layer) for layer in flat], [id(layer) for layer in layers])

    def test_simple_cnn(self):
        model = load_backbone("simple_cnn", (16, 16, 3))
        blocks = backbone_blocks(model)
        self.assertEqual(list(blocks), ["block1", "block2", "block3"])
        self.assertEqual(
            [layer.name for layer in blocks["block1"]], ["block1_conv", "block1_bn", "block1_relu", "block1_pool"]
        )
        self.check_partition(model, blocks)

    def test_keras_families(self):
        cases = {
            "mobilenet_v3_small": (32, ["stem", "expanded_conv", "expanded_conv_1"], "top", 13),
            "resnet50": (32, ["stem", "conv2_block1", "conv2_block2"], "conv5_block3", 17),
            "vgg16": (32, ["block1", "block2", "block3"], "block5", 5),
        }
        for name, (size, first, last, count) in cases.items():
            model = load_backbone(name, (size, size, 3))
            blocks = backbone_blocks(model, get_spec(name))
            self.assertEqual(list(blocks)[:3], first, name)
            self.assertEqual(list(blocks)[-1], last, name)
            self.assertLen(blocks, count)
            self.check_partition(model, blocks)
            # The registry pattern is also what the guess picks for an unlabelled model.
            self.assertEqual(list(backbone_blocks(model)), list(blocks), name)
        resnet_blocks = backbone_blocks(load_backbone("resnet50", (32, 32, 3)))
        self.assertEqual([layer.name for layer in resnet_blocks["stem"]][:2], ["conv1_pad", "conv1_conv"])
        self.assertTrue(all(layer.name.startswith("conv3_block1_") for layer in resnet_blocks["conv3_block1"]))

    def test_block_end_family(self):
        # Inception-style nets mark block ends by name ("mixed<N>").
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(2, 1, name="conv_a")(inputs)
        x = keras.layers.Activation("relu", name="mixed0")(x)
        x = keras.layers.Conv2D(2, 1, name="conv_b")(x)
        x = keras.layers.Activation("relu", name="mixed1")(x)
        x = keras.layers.GlobalAveragePooling2D(name="avg")(x)
        model = keras.Model(inputs, x)
        blocks = backbone_blocks(model, get_spec("inception_v3"))
        self.assertEqual(
            {k: [layer.name for layer in v] for k, v in blocks.items()},
            {"block0": ["conv_a", "mixed0"], "block1": ["conv_b", "mixed1"], "top": ["avg"]},
        )

    def test_custom_model_without_blocks(self):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
        spec = BackboneSpec("custom", "custom", "none", block_key=r"^(block\d+)_")
        blocks = backbone_blocks(model, spec)
        self.assertEqual(list(blocks), ["stem"])
