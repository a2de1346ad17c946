import keras
import numpy as np

from keras_transfer.layers import BackbonePreprocessing
from keras_transfer.layers import ImageInputAdapter
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import feature_extractor
from keras_transfer.recipes import freeze_backbone
from keras_transfer.recipes import get_backbone
from keras_transfer.recipes import get_head
from tests.test_case import TestCase


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class BuildClassifierTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        cls.model = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0.2)
        rng = np.random.default_rng(0)
        cls.x = rng.uniform(0, 255, size=(4, 16, 16, 1)).astype("float32")
        cls.y = np.array([0, 1, 2, 1])

    def test_structure(self):
        model = self.model
        self.assertEqual(model.output_shape, (None, 3))
        backbone = get_backbone(model)
        self.assertEqual(backbone.name, "backbone")
        self.assertEqual(backbone.input_shape, (None, 16, 16, 3))
        head = get_head(model)
        self.assertIsInstance(head, keras.layers.Dense)
        self.assertEqual(head.units, 3)
        self.assertEqual(head.dtype_policy.name, "float32")
        self.assertIsInstance(model.get_layer("input_adapter"), ImageInputAdapter)
        self.assertEqual(model.get_layer("preprocessing").mode, "unit")
        self.assertEqual(model.name, "simple_cnn_classifier")

    def test_forward_matches_hand_composition(self):
        # Reference: grey -> RGB by repetition, /255, backbone, global average pool, dense, softmax.
        backbone = get_backbone(self.model)
        head = get_head(self.model)
        rgb = np.repeat(self.x, 3, axis=-1) / 255.0
        features = backbone.predict(rgb, verbose=0).mean(axis=(1, 2))
        expected = _softmax(features @ head.kernel.numpy() + head.bias.numpy())
        self.assertAllClose(self.model.predict(self.x, verbose=0), expected, atol=1e-5, rtol=1e-4)
        pooled = feature_extractor(self.model).predict(self.x, verbose=0)
        self.assertAllClose(pooled, features, atol=1e-5, rtol=1e-4)

    def test_feature_extractor_at_a_backbone_layer(self):
        # Reference: grey -> RGB by repetition, /255, the backbone up to block2_pool (unpooled).
        backbone = get_backbone(self.model)
        part = keras.Model(backbone.inputs, backbone.get_layer("block2_pool").output)
        expected = part.predict(np.repeat(self.x, 3, axis=-1) / 255.0, verbose=0)
        features = feature_extractor(self.model, layer="block2_pool")
        self.assertEqual(features.output_shape, (None, 4, 4, 32))
        self.assertAllClose(features.predict(self.x, verbose=0), expected, atol=1e-5, rtol=1e-4)
        # The features share the classifier's weights.
        self.assertTrue({id(v) for v in features.weights} <= {id(v) for v in self.model.weights})
        self.assertRaisesValueError(["`layer`", "'block9'", "block2_pool"], feature_extractor, self.model, "block9")

    def test_grey_matches_rgb_model_with_same_weights(self):
        rgb_model = build_classifier("simple_cnn", 3, (16, 16, 3), dropout=0.2)
        rgb_model.set_weights(self.model.get_weights())
        self.assertAllClose(
            rgb_model.predict(np.repeat(self.x, 3, axis=-1), verbose=0),
            self.model.predict(self.x, verbose=0),
            atol=1e-6,
        )

    def test_pseudo_colour_input_mapping(self):
        jet = build_classifier("simple_cnn", 3, (16, 16, 1), dropout=0.2, grey_to_rgb="jet")
        jet.set_weights(self.model.get_weights())  # no new weights: the colormap is fixed
        coloured = jet.get_layer("input_adapter")(self.x)
        self.assertEqual(tuple(coloured.shape), (4, 16, 16, 3))
        self.assertNotAllClose(coloured[..., 0], coloured[..., 2])  # not replication
        learned = build_classifier("simple_cnn", 3, (16, 16, 1), grey_to_rgb="learned", dropout=0.2)
        self.assertEqual(len(learned.weights), len(self.model.weights) + 2)
        freeze_backbone(learned)  # the colour map trains with the head
        self.assertIn("input_adapter/colour_scale", [w.path for w in learned.trainable_weights])
        self.run_serialization_test(learned, self.x)
        self.assertRaisesValueError(
            ["`inputs`", "grey_to_rgb='jet'"], build_classifier, "simple_cnn", 3, (16, 16, 3), grey_to_rgb="jet"
        )

    def test_value_range_and_image_size(self):
        model = build_classifier(
            "simple_cnn",
            2,
            (8, 8, 3),
            image_size=12,
            value_range=(0, 1),
            pooling="max",
            dropout=0,
            activation=None,
            name="mine",
        )
        self.assertEqual(model.name, "mine")
        self.assertEqual(get_backbone(model).input_shape, (None, 12, 12, 3))
        self.assertEqual(model.get_layer("preprocessing").value_range, (0.0, 1.0))
        self.assertIsInstance(model.get_layer("pool"), keras.layers.GlobalMaxPooling2D)
        self.assertNotIn("dropout", [layer.name for layer in model.layers])
        x = np.random.default_rng(1).uniform(size=(2, 8, 8, 3)).astype("float32")
        logits = model.predict(x, verbose=0)
        self.assertFalse(np.allclose(logits.sum(axis=-1), 1.0))  # logits, not probabilities

    def test_keras_application_backbone_raised_to_min_size(self):
        model = build_classifier("mobilenet_v3_small", 5, (16, 16, 1))
        self.assertEqual(get_backbone(model).input_shape, (None, 32, 32, 3))
        self.assertEqual(model.get_layer("preprocessing").mode, "none")
        out = model.predict(np.zeros((1, 16, 16, 1), "float32"), verbose=0)
        self.assertAllClose(out.sum(), 1.0, atol=1e-5)

    def test_built_backbone_model(self):
        inputs = keras.Input((8, 8, 3))
        base = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
        model = build_classifier(base, 2, (8, 8, 1), dropout=0)
        self.assertIs(get_backbone(model), base)
        self.assertEqual(model.get_layer("preprocessing").mode, "none")
        self.assertRaisesValueError(
            ["`weights`", "weights='imagenet'"], build_classifier, base, 2, (8, 8, 3), weights="imagenet"
        )

    def test_serialization_and_export(self):
        self.run_serialization_test(self.model, self.x)
        self.run_export_test(self.model, self.x)

    def test_export_straight_after_fit_and_after_reload(self):
        # The order users take: build, compile, fit, export (nothing called in between);
        # then .keras save, reload, export; with a frozen and with a trainable backbone.
        def build(frozen):
            def build_and_compile():
                model = build_classifier("simple_cnn", 3, (16, 16, 1))
                if frozen:
                    freeze_backbone(model)
                model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
                return model

            return build_and_compile

        for frozen in (True, False):
            self.run_fit_then_export_test(build(frozen), self.x, self.x, fit_y=self.y, batch_size=4)

    def test_fit_with_frozen_backbone(self):
        model = build_classifier("simple_cnn", 3, (16, 16, 1))
        freeze_backbone(model)
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        self.run_fit_test(model, self.x, self.y, batch_size=4, frozen=[get_backbone(model)])
        self.assertLen(model.trainable_weights, 2)  # head kernel and bias only

    def test_mixed_precision(self):
        def build():
            model = build_classifier("simple_cnn", 3, (16, 16, 1))
            model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
            return model

        model, _ = self.run_mixed_precision_test(build, self.x, self.y, batch_size=4)
        self.assertEqual(get_backbone(model).layers[1].compute_dtype, "float16")
        self.assertEqual(model.output.dtype, "float32")
        self.assertTrue(np.all(np.isfinite(model.predict(self.x, verbose=0))))

    def test_bad_arguments(self):
        for bad in (1, 0, 2.0, True):
            self.assertRaisesValueError(
                ["`num_classes`", f"num_classes={bad!r}", "two classes"],
                build_classifier,
                "simple_cnn",
                bad,
                (16, 16, 3),
            )
        for bad in ((16, 16), (16, 16, 2), (0, 16, 3), "16x16"):
            self.assertRaisesValueError(
                ["`input_shape`", f"input_shape={bad!r}"], build_classifier, "simple_cnn", 3, bad
            )
        self.assertRaisesValueError(
            ["`pooling`", "pooling='sum'"], build_classifier, "simple_cnn", 3, (16, 16, 3), pooling="sum"
        )
        self.assertRaisesValueError(
            ["`dropout`", "dropout=1.0"], build_classifier, "simple_cnn", 3, (16, 16, 3), dropout=1.0
        )
        self.assertRaisesValueError(["`backbone`", "'simple'"], build_classifier, "simple", 3, (16, 16, 3))

    def test_get_errors_on_other_models(self):
        inputs = keras.Input((4,))
        plain = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="plain")
        self.assertRaisesValueError(["'backbone'", "'plain'", "dense"], get_backbone, plain)
        self.assertRaisesValueError(["'head'", "'plain'"], get_head, plain)
        self.assertRaisesValueError(["'head'"], feature_extractor, plain)


class PreprocessingInsideTest(TestCase):
    def test_caffe_family_gets_caffe_preprocessing(self):
        model = build_classifier("vgg16", 2, (32, 32, 3), dropout=0)
        layer = model.get_layer("preprocessing")
        self.assertIsInstance(layer, BackbonePreprocessing)
        self.assertEqual(layer.mode, "caffe")


class ReplaceHeadTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        cls.source = build_classifier("simple_cnn", 5, (16, 16, 1), dropout=0)
        cls.x = np.random.default_rng(3).uniform(0, 255, size=(4, 16, 16, 1)).astype("float32")

    def test_copy_is_independent(self):
        from keras_transfer.recipes import replace_head

        model = replace_head(self.source, 3, name="target")
        self.assertEqual(model.output_shape, (None, 3))
        self.assertEqual(model.name, "target")
        self.assertEqual(get_head(model).units, 3)
        # Same features as the source before any training.
        self.assertAllClose(
            feature_extractor(model).predict(self.x, verbose=0),
            feature_extractor(self.source).predict(self.x, verbose=0),
            atol=1e-6,
        )
        source_ids = {id(v) for v in get_backbone(self.source).weights}
        self.assertFalse(source_ids & {id(v) for v in model.weights})
        before = [w.copy() for w in get_backbone(self.source).get_weights()]
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        self.run_fit_test(model, self.x, np.array([0, 1, 2, 0]), batch_size=4)
        for a, b in zip(before, get_backbone(self.source).get_weights()):
            np.testing.assert_array_equal(a, b)
        self.run_serialization_test(model, self.x)

    def test_shared_backbone(self):
        from keras_transfer.recipes import replace_head

        model = replace_head(self.source, 2, copy=False)
        source_ids = {id(v) for v in get_backbone(self.source).weights}
        self.assertTrue(source_ids <= {id(v) for v in model.weights})
        self.assertRaisesValueError(["`num_classes`", "num_classes=1"], replace_head, self.source, 1)
