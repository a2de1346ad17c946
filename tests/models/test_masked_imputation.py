"""MaskedImputation's mask is a stateless function of (seed, optimizer step).

(Patch masks and the loss on hidden entries: tests/models/test_pretext.py; resume:
tests/reliability/test_resume.py; two replicas: tests/distribute/test_mirrored.py.)
"""

import keras
import numpy as np

from keras_transfer.models import MaskedImputation
from tests.model_zoo import conv_encoder
from tests.test_case import TestCase


class StatelessMaskTest(TestCase):
    def test_mask_is_a_function_of_seed_and_step(self):
        model = MaskedImputation(conv_encoder(), mask_rate=0.4, patch_size=4, decoder_hidden_dim=8, seed=3)
        model.compile(keras.optimizers.SGD(0.1))
        x01 = np.ones((200, 8, 8, 1), dtype="float32")
        _, hidden = model._corrupt(x01)
        self.assertAllClose(model._corrupt(x01)[1], hidden)
        hidden = hidden.numpy()
        blocks = hidden.reshape(200, 2, 4, 2, 4)
        self.assertTrue(np.all(blocks == blocks[:, :, :1, :, :1]))  # whole 4x4 patches
        self.assertAllClose(hidden.mean(), 0.4, atol=0.04)  # the same rate as before
        model.optimizer.iterations.assign(7)
        self.assertNotAllClose(model._corrupt(x01)[1], hidden)

    def test_vector_mask_rate_and_drawn_seed(self):
        encoder = keras.Sequential([keras.Input((10,)), keras.layers.Dense(4, activation="tanh")])
        model = MaskedImputation(encoder, mask_rate=0.3, value_range=(0, 1), decoder_hidden_dim=8)
        _, hidden = model._corrupt(np.ones((400, 10), "float32"))
        self.assertAllClose(np.mean(hidden), 0.3, atol=0.03)
        self.assertEqual(model.get_config()["seed"], model.seed)
        clone = MaskedImputation.from_config(model.get_config())
        self.assertAllClose(clone._corrupt(np.ones((400, 10), "float32"))[1], hidden)
