"""DenoisingAutoencoder's noise is a stateless function of (seed, optimizer step).

(Architecture, loss and corruption rates: tests/models/test_pretext.py; resume after an
interruption and after a `.keras` reload: tests/reliability/test_resume.py; two replicas
equal one device: tests/distribute/test_mirrored.py.)
"""

import keras
import numpy as np

from keras_transfer.models import DenoisingAutoencoder
from tests.model_zoo import conv_encoder
from tests.test_case import TestCase

X01 = np.full((64, 8, 8, 1), 0.5, dtype="float32")


def _model(**kwargs):
    model = DenoisingAutoencoder(conv_encoder(), decoder_hidden_dim=8, **kwargs)
    model.compile(keras.optimizers.SGD(0.1))
    return model


class StatelessNoiseTest(TestCase):
    def test_noise_is_a_function_of_seed_and_step(self):
        model = _model(noise_stddev=0.2, seed=4)
        first, _ = model._corrupt(X01)
        again, _ = model._corrupt(X01)
        self.assertAllClose(first, again)  # no hidden state advances between draws
        self.assertAllClose(_model(noise_stddev=0.2, seed=4)._corrupt(X01)[0], first)  # a new model
        self.assertNotAllClose(_model(noise_stddev=0.2, seed=5)._corrupt(X01)[0], first)
        evaluation, _ = model._corrupt(X01, model._noise_seed(training=False))
        self.assertNotAllClose(evaluation, first)  # evaluate draws from a stream of its own
        model.optimizer.iterations.assign(1)
        self.assertNotAllClose(model._corrupt(X01)[0], first)
        # Same distribution as before: N(0, 0.2^2) added.
        noise = first.numpy() - 0.5
        self.assertAllClose(np.mean(noise), 0.0, atol=0.01)
        self.assertAllClose(np.std(noise), 0.2, atol=0.01)

    def test_masking_rate(self):
        model = _model(corruption="masking", mask_rate=0.3, seed=1)
        corrupted, weights = model._corrupt(X01)
        self.assertAllClose(np.mean(corrupted.numpy() == 0.0), 0.3, atol=0.03)
        self.assertAllClose(weights, np.ones_like(X01))

    def test_drawn_seed_is_kept_in_the_config(self):
        keras.utils.set_random_seed(3)
        model = _model()
        self.assertIsInstance(model.seed, int)
        self.assertEqual(model.get_config()["seed"], model.seed)
        clone = DenoisingAutoencoder.from_config(model.get_config())
        self.assertEqual(clone.seed, model.seed)
        self.assertAllClose(clone._corrupt(X01)[0], model._corrupt(X01)[0])
        keras.utils.set_random_seed(3)
        self.assertEqual(_model().seed, model.seed)  # seeded by keras.utils.set_random_seed

    def test_fit_is_repeatable(self):
        x = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 1)).astype("float32")
        losses = []
        for _ in range(2):
            keras.utils.set_random_seed(0)
            model = _model(seed=2)
            losses.append(model.fit(x, batch_size=4, epochs=2, verbose=0, shuffle=False).history["loss"])
        self.assertAllClose(losses[0], losses[1], atol=0, rtol=0)

    def test_errors(self):
        self.assertRaisesValueError(["`seed`", "seed=-1"], DenoisingAutoencoder, conv_encoder(), seed=-1)
