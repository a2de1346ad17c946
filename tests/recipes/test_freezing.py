import keras
import numpy as np

from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import freeze_backbone
from keras_transfer.recipes import get_backbone
from keras_transfer.recipes import select_blocks
from keras_transfer.recipes import trainable_report
from keras_transfer.recipes import unfreeze_backbone
from tests.test_case import TestCase


def _trainable_names(model):
    return {layer.name for layer in get_backbone(model).layers if layer.trainable and layer.weights}


class FreezingTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        cls.model = build_classifier("simple_cnn", 3, (16, 16, 1))
        cls.mobilenet = build_classifier("mobilenet_v3_small", 3, (32, 32, 3))
        rng = np.random.default_rng(0)
        cls.x = rng.uniform(0, 255, size=(8, 16, 16, 1)).astype("float32")
        cls.y = np.arange(8) % 3

    def test_freeze_backbone(self):
        freeze_backbone(self.model)
        report = trainable_report(self.model)
        head_params = 64 * 3 + 3
        self.assertEqual(report["trainable"], head_params)
        self.assertEqual(report["total"], sum(int(np.prod(v.shape)) for v in self.model.weights))
        self.assertAlmostEqual(report["fraction"], head_params / report["total"])

    def test_surgical_choices_simple_cnn(self):
        backbone = get_backbone(self.model)
        self.assertEqual(select_blocks(backbone, "all"), ["block1", "block2", "block3"])
        self.assertEqual(select_blocks(backbone, "first"), ["block1"])
        self.assertEqual(select_blocks(backbone, "middle"), ["block2"])
        self.assertEqual(select_blocks(backbone, "last"), ["block3"])
        self.assertEqual(select_blocks(backbone, ["block3", "block1"]), ["block3", "block1"])
        for blocks, expected in (
            ("first", {"block1_conv"}),
            ("middle", {"block2_conv"}),
            ("last", {"block3_conv"}),
            (["block1", "block3"], {"block1_conv", "block3_conv"}),
            ("all", {"block1_conv", "block2_conv", "block3_conv"}),
        ):
            unfreeze_backbone(self.model, blocks=blocks)
            self.assertEqual(_trainable_names(self.model), expected, blocks)

    def test_surgical_thirds_cover_mobilenet(self):
        backbone = get_backbone(self.mobilenet)
        first = select_blocks(backbone, "first")
        middle = select_blocks(backbone, "middle")
        last = select_blocks(backbone, "last")
        all_blocks = select_blocks(backbone, "all")
        self.assertEqual(first[0], "stem")
        self.assertEqual(last[-1], "top")
        # The thirds partition the blocks, in order.
        self.assertEqual(first + middle + last, all_blocks)
        self.assertTrue(first and middle and last)

    def test_top_n_layers(self):
        unfreeze_backbone(self.model, top_n_layers=2)
        # The last two layers with weights are block3_conv and block3_bn; BatchNorm stays frozen.
        self.assertEqual(_trainable_names(self.model), {"block3_conv"})
        unfreeze_backbone(self.model, top_n_layers=2, train_batchnorm=True)
        self.assertEqual(_trainable_names(self.model), {"block3_conv", "block3_bn"})

    def test_fit_after_unfreeze_keeps_frozen_weights_and_bn_statistics(self):
        model = build_classifier("simple_cnn", 3, (16, 16, 1))
        unfreeze_backbone(model, blocks="last")
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        backbone = get_backbone(model)
        frozen = [backbone.get_layer(n) for n in ("block1_conv", "block2_conv")]
        bns = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
        self.run_fit_test(model, self.x, self.y, batch_size=8, frozen=frozen + bns)
        self.assertEqual({v.path.split("/")[0] for v in model.trainable_weights}, {"block3_conv", "head"})

    def test_train_batchnorm_updates_statistics(self):
        # Documented behaviour: with train_batchnorm=True, BatchNorm trains and its statistics move.
        model = build_classifier("simple_cnn", 3, (16, 16, 1))
        unfreeze_backbone(model, train_batchnorm=True)
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        bn = get_backbone(model).get_layer("block1_bn")
        before = bn.moving_mean.numpy().copy()
        model.fit(self.x, self.y, batch_size=8, epochs=1, verbose=0)
        self.assertNotAllClose(bn.moving_mean.numpy(), before)

    def test_errors(self):
        backbone = get_backbone(self.model)
        self.assertRaisesValueError(
            ["`blocks`", "blocks='top'", "block1, block2, block3"], select_blocks, backbone, "top"
        )
        self.assertRaisesValueError(
            ["`blocks`", "['block9']", "Available: block1"], select_blocks, backbone, ["block1", "block9"]
        )
        self.assertRaisesValueError(["`blocks`"], select_blocks, backbone, [])
        self.assertRaisesValueError(["`top_n_layers`", "top_n_layers=0"], unfreeze_backbone, self.model, top_n_layers=0)
        self.assertRaisesValueError(
            ["`top_n_layers`", "at most 6", "top_n_layers=7"], unfreeze_backbone, self.model, top_n_layers=7
        )
        inputs = keras.Input((4,))
        plain = keras.Model(inputs, keras.layers.Dense(2)(inputs))
        self.assertRaisesValueError(["'backbone'"], freeze_backbone, plain)
