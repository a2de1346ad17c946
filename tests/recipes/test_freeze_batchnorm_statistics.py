import keras
import numpy as np

from keras_transfer.layers import FrozenBatchNormalization
from keras_transfer.recipes import build_classifier
from keras_transfer.recipes import freeze_backbone
from keras_transfer.recipes import freeze_batchnorm_statistics
from keras_transfer.recipes import get_backbone
from keras_transfer.recipes import unfreeze_backbone
from keras_transfer.utils.model_graph import iter_leaf_layers
from tests.test_case import TestCase


def classes(model):
    return [(path, type(layer)) for path, layer in iter_leaf_layers(model)]


class FreezeBatchNormStatisticsTest(TestCase):
    @classmethod
    def setUpClass(cls):
        keras.utils.set_random_seed(0)
        cls.model = build_classifier("simple_cnn", 3, (8, 8, 3), widths=(4, 8))
        rng = np.random.default_rng(0)
        for _, layer in iter_leaf_layers(cls.model):
            if isinstance(layer, keras.layers.BatchNormalization):
                channels = layer.moving_mean.shape[0]
                layer.moving_mean.assign(rng.normal(size=channels) * 0.3)
                layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=channels))
                layer.gamma.assign(rng.uniform(0.5, 1.5, size=channels))
                layer.beta.assign(rng.normal(size=channels) * 0.3)
        cls.x = rng.uniform(0, 255, size=(6, 8, 8, 3)).astype("float32")  # simple_cnn rescales by 1/255
        cls.y = np.array([0, 1, 2, 0, 1, 2])

    def test_nested_classifier_copy(self):
        frozen = freeze_batchnorm_statistics(self.model)
        expected = [
            (path, FrozenBatchNormalization if cls is keras.layers.BatchNormalization else cls)
            for path, cls in classes(self.model)
        ]
        self.assertEqual(classes(frozen), expected)
        self.assertEqual(sum(cls is FrozenBatchNormalization for _, cls in classes(frozen)), 2)
        self.assertAllClose(frozen.predict(self.x, verbose=0), self.model.predict(self.x, verbose=0), atol=1e-6)
        self.assertFalse({id(v) for v in frozen.weights} & {id(v) for v in self.model.weights})
        # The original is untouched.
        self.assertEqual(sum(cls is keras.layers.BatchNormalization for _, cls in classes(self.model)), 2)

    def test_full_fine_tune_trains_affine_and_keeps_statistics(self):
        model = freeze_batchnorm_statistics(self.model)
        unfreeze_backbone(model, train_batchnorm=True)
        model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
        backbone = get_backbone(model)
        bns = [layer for layer in backbone.layers if isinstance(layer, FrozenBatchNormalization)]
        statistics = [v for bn in bns for v in (bn.moving_mean, bn.moving_variance)]
        trained = {v.path for v in model.trainable_weights}
        self.assertTrue({"block1_bn/gamma", "block1_bn/beta", "block1_conv/kernel", "head/kernel"} <= trained)
        # Every trainable weight moves (convs, gamma/beta, head); the statistics do not.
        self.run_fit_test(model, self.x, self.y, batch_size=6, steps=3, frozen=statistics)
        self.assertNotAllClose(model.predict(self.x, verbose=0), self.model.predict(self.x, verbose=0), atol=1e-4)

    def test_trainable_flags_are_copied(self):
        source = keras.models.clone_model(self.model)
        source.set_weights(self.model.get_weights())
        freeze_backbone(source)
        frozen = freeze_batchnorm_statistics(source)
        self.assertFalse(get_backbone(frozen).trainable)
        self.assertEqual(sorted(v.path for v in frozen.trainable_weights), ["head/bias", "head/kernel"])

    def test_errors(self):
        inputs = keras.Input((4,))
        no_bn = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="dense_only")
        self.assertRaisesValueError(
            ["`model` must contain a keras.layers.BatchNormalization", "'dense_only'"],
            freeze_batchnorm_statistics,
            no_bn,
        )
        already = freeze_batchnorm_statistics(self.model)
        self.assertRaisesValueError("only FrozenBatchNormalization", freeze_batchnorm_statistics, already)

        class Subclassed(keras.Model):
            def call(self, x):
                return x

        self.assertRaisesValueError(
            ["Functional or Sequential", "Subclassed"], freeze_batchnorm_statistics, Subclassed()
        )
