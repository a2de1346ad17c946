import keras
import numpy as np

from keras_transfer.layers import ZeroShotHead
from tests.test_case import TestCase


def numpy_head(x, classes, scale):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    logits = scale * x @ classes.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True), logits


def numpy_sigmoid_head(x, classes, scale, bias):
    """SigLIP's per-class probabilities sigmoid(t cos + b), float64."""
    x = np.float64(x) / np.linalg.norm(np.float64(x), axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-(scale * x @ np.float64(classes).T + bias)))


class ZeroShotHeadTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(4, 6)).astype("float32")
        classes = rng.normal(size=(3, 6))
        self.classes = (classes / np.linalg.norm(classes, axis=1, keepdims=True)).astype("float32")

    def test_matches_numpy(self):
        head = ZeroShotHead(3, 6, logit_scale=20.0, class_embeddings=self.classes, class_names=["a", "b", "c"])
        probs, logits = numpy_head(self.x, self.classes, 20.0)
        self.assertAllClose(head(self.x), probs, atol=1e-6)
        head_logits = ZeroShotHead(3, 6, logit_scale=20.0, class_embeddings=self.classes, output="logits")
        self.assertAllClose(head_logits(self.x), logits, atol=1e-5)
        self.assertEqual(head.get_config()["class_names"], ["a", "b", "c"])

    def test_sigmoid_matches_numpy_and_is_independent_per_class(self):
        kwargs = {"logit_scale": 12.0, "logit_bias": -4.0, "class_embeddings": self.classes, "activation": "sigmoid"}
        head = ZeroShotHead(3, 6, **kwargs)
        expected = numpy_sigmoid_head(self.x, self.classes, 12.0, -4.0)
        self.assertAllClose(head(self.x), expected, atol=1e-6)
        self.assertNotAllClose(expected.sum(1), np.ones(4), atol=1e-2)  # not a distribution over the classes
        # A class's probability depends on its own embedding only: drop a class, the others stay.
        two = ZeroShotHead(2, 6, **{**kwargs, "class_embeddings": self.classes[:2]})
        self.assertAllClose(two(self.x), expected[:, :2], atol=1e-6)
        logits = ZeroShotHead(3, 6, **{**kwargs, "output": "logits"})(self.x)
        self.assertAllClose(logits, np.log(expected / (1 - expected)), atol=1e-4)
        # The bias shifts every logit alike: no effect on softmax probabilities.
        shifted = ZeroShotHead(3, 6, logit_scale=12.0, logit_bias=-4.0, class_embeddings=self.classes)
        self.assertAllClose(shifted(self.x), numpy_head(self.x, self.classes, 12.0)[0], atol=1e-6)
        config = head.get_config()
        self.assertEqual((config["activation"], config["logit_bias"]), ("sigmoid", -4.0))
        clone = ZeroShotHead.from_config(config)  # `.keras` round trip and export: tests/recipes/test_zero_shot.py
        self.assertEqual(clone.get_config(), config)

    def test_gradients_match_finite_differences(self):
        head = ZeroShotHead(3, 6, logit_scale=5.0, class_embeddings=self.classes, dtype="float64")
        self.run_gradient_check(lambda x: keras.ops.sum(keras.ops.log(head(x)[:, 0])), [self.x[:2]])

    def test_layer_basics_and_float32_under_mixed_precision(self):
        self.run_layer_test(
            ZeroShotHead,
            {"num_classes": 3, "embedding_dim": 6, "logit_scale": 10.0},
            input_shape=(4, 6),
            expected_output_shape=(4, 3),
            expected_num_trainable_weights=1,
        )
        keras.config.set_dtype_policy("mixed_float16")
        head = ZeroShotHead(3, 6, logit_scale=100.0, class_embeddings=self.classes)
        out = head(self.x.astype("float16"))
        self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
        self.assertAllClose(
            out, numpy_head(self.x.astype("float16").astype("float32"), self.classes, 100.0)[0], atol=1e-5
        )

    def test_errors(self):
        self.assertRaisesValueError("`num_classes` must be a positive integer", ZeroShotHead, 0, 6)
        self.assertRaisesValueError("`logit_scale` must be a positive finite number", ZeroShotHead, 3, 6, logit_scale=0)
        self.assertRaisesValueError(
            "`class_names` must hold num_classes=3 names", ZeroShotHead, 3, 6, class_names=["a"]
        )
        self.assertRaisesValueError(
            "`class_embeddings` must have shape", ZeroShotHead, 3, 6, class_embeddings=np.zeros((2, 6))
        )
        self.assertRaisesValueError("`output` must be one of", ZeroShotHead, 3, 6, output="softmax")
        self.assertRaisesValueError(
            ["`activation` must be one of ['softmax', 'sigmoid']", "activation='relu'", "SigLIP"],
            ZeroShotHead,
            3,
            6,
            activation="relu",
        )
        self.assertRaisesValueError(
            ["`logit_bias` must be a finite number", "logit_bias=nan"], ZeroShotHead, 3, 6, logit_bias=float("nan")
        )
        self.assertRaisesValueError("expects embeddings of size embedding_dim=6", ZeroShotHead(3, 6), self.x[:, :4])
