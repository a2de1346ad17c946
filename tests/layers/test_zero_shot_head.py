import keras
import numpy as np

from keras_transfer.layers import ZeroShotHead
from tests.test_case import TestCase


def numpy_head(x, classes, scale):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    logits = scale * x @ classes.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True), logits


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
        self.assertRaisesValueError("expects embeddings of size embedding_dim=6", ZeroShotHead(3, 6), self.x[:, :4])
