import keras
import numpy as np

from keras_transfer.losses import MaskedTokenLoss
from keras_transfer.losses import masked_token_loss
from tests.test_case import TestCase


def _reference(ids, logits, selected):
    logits = logits.astype("float64")
    log_probs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
    log_probs -= logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(log_probs, ids[..., None], axis=-1)[..., 0]
    return (nll * selected).sum() / max(selected.sum(), 1.0)


class MaskedTokenLossTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.ids = rng.integers(0, 11, size=(3, 7))
        self.logits = rng.normal(size=(3, 7, 11)).astype("float32")
        self.selected = (rng.random((3, 7)) < 0.3).astype("float32")

    def test_matches_numpy_on_selected_positions_only(self):
        expected = _reference(self.ids, self.logits, self.selected)
        self.assertAllClose(masked_token_loss(self.ids, self.logits, self.selected), expected, atol=1e-6)
        # Changing logits at unselected positions does not change the loss.
        other = self.logits.copy()
        other[self.selected == 0] += 5.0 * np.random.default_rng(1).normal(size=other[self.selected == 0].shape)
        self.assertAllClose(masked_token_loss(self.ids, other, self.selected), expected, atol=1e-6)
        self.assertAllClose(masked_token_loss(self.ids, self.logits, np.zeros((3, 7))), 0.0)
        # Keras's weighted mean divides by every position instead.
        keras_mean = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            self.ids, self.logits, sample_weight=self.selected
        )
        self.assertAllClose(keras_mean, expected * self.selected.sum() / self.selected.size, atol=1e-6)

    def test_loss_class_and_gradient(self):
        loss = MaskedTokenLoss()
        expected = _reference(self.ids, self.logits, self.selected)
        self.assertAllClose(loss(self.ids, self.logits, sample_weight=self.selected), expected, atol=1e-6)
        self.assertAllClose(loss(self.ids, self.logits), _reference(self.ids, self.logits, np.ones((3, 7))), atol=1e-6)
        restored = MaskedTokenLoss.from_config(loss.get_config())
        self.assertEqual(restored.get_config(), loss.get_config())
        self.run_gradient_check(
            lambda z: masked_token_loss(self.ids, z, self.selected), [self.logits.astype("float64")]
        )
        result = masked_token_loss(self.ids, self.logits.astype("float16"), self.selected)
        self.assertEqual(keras.backend.standardize_dtype(result.dtype), "float32")

    def test_bad_shapes(self):
        self.assertRaisesValueError(["`logits`", "(3, 7)"], masked_token_loss, self.ids, self.logits[0], self.selected)
