"""Rotation prediction, denoising autoencoder and masked imputation."""

import keras
import numpy as np

from keras_transfer.models import DenoisingAutoencoder
from keras_transfer.models import MaskedImputation
from keras_transfer.models import RotationPrediction
from tests.models.test_simclr import assert_nan_is_reported
from tests.models.test_simclr import make_encoder
from tests.models.test_simclr import nan_hiding_encoder
from tests.test_case import TestCase


def images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(n, 8, 8, 1)).astype("float32")


class PretextCommonTest(TestCase):
    """The harness steps for each pretext model."""

    def check_model(self, build):
        # The generic checks run for the three models in the model zoo: a killed run resumed (and its
        # `.keras` file reloaded and fit on) ends as the uninterrupted run (tests/reliability/test_resume.py);
        # export straight after fit (tests/reliability/test_resume.py); mixed-precision steps
        # with float32 outputs (tests/reliability/test_mixed_precision.py; NaN: test_resume.py).
        x = images(8)
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = self.run_fit_test(model, x, batch_size=8)
        self.assertIn("loss", history.history)
        reloaded = self.run_serialization_test(model, x, export_reloaded=True)
        self.assertEqual(int(reloaded.optimizer.iterations.numpy()), 2)
        self.assertAllClose(model.predict(x, verbose=0), model.encoder.predict(x, verbose=0))

    def test_rotation_prediction(self):
        self.check_model(lambda: RotationPrediction(make_encoder()))

    def test_denoising_autoencoder(self):
        self.check_model(lambda: DenoisingAutoencoder(make_encoder(), noise_stddev=0.0))

    def test_masked_imputation(self):
        self.check_model(lambda: MaskedImputation(make_encoder(), mask_rate=0.5, patch_size=2))

    def test_nan_is_reported_and_stops_training(self):
        clean = images(16)
        bad = clean.copy()
        bad[0, 3, 3, 0] = np.nan
        for make in (
            lambda: RotationPrediction(nan_hiding_encoder()),
            lambda: DenoisingAutoencoder(nan_hiding_encoder(), noise_stddev=0.1, seed=0),
            lambda: MaskedImputation(nan_hiding_encoder(), mask_rate=0.5, seed=0),
        ):

            def build(make=make):
                model = make()
                model.compile(optimizer=keras.optimizers.Adam(1e-2))
                return model

            with self.subTest(type(make()).__name__):
                assert_nan_is_reported(self, build, bad, clean, fit_kwargs={"batch_size": 8})


class RotationPredictionTest(TestCase):
    def test_rotations_and_loss_match_numpy(self):
        model = RotationPrediction(make_encoder())
        x = images(3)
        rotated, labels = model.rotate(x)
        expected = np.concatenate([np.rot90(x, k, axes=(1, 2)) for k in range(4)])
        self.assertAllClose(rotated, expected, atol=0)
        self.assertAllClose(labels, np.repeat(np.arange(4), 3), atol=0)
        logits = model.rotation_head(model.encoder(expected)).numpy().astype("float64")
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        expected_loss = -np.mean(log_p[np.arange(12), np.repeat(np.arange(4), 3)])
        model.compile(optimizer="adam")
        result = model.evaluate(x, batch_size=3, verbose=0, return_dict=True)
        self.assertAllClose(result["loss"], expected_loss, atol=1e-5, rtol=1e-5)
        self.assertEqual(set(result), {"loss", "rotation_accuracy"})
        two = RotationPrediction(make_encoder(), num_rotations=2)
        rotated, labels = two.rotate(x)
        self.assertAllClose(rotated[3:], np.rot90(x, 2, axes=(1, 2)), atol=0)

    def test_errors(self):
        self.assertRaisesValueError(
            ["`num_rotations`", "num_rotations=3"], RotationPrediction, make_encoder(), num_rotations=3
        )
        self.assertRaisesValueError(["square images", "(None, 8, 6, 1)"], RotationPrediction, make_encoder((8, 6, 1)))
        model = RotationPrediction(make_encoder())
        model.compile(optimizer="adam")
        self.assertRaisesValueError(["rank 4", "x[..., None]"], model.fit, images()[..., 0], batch_size=4, verbose=0)


class DenoisingAutoencoderTest(TestCase):
    def test_loss_matches_numpy_without_noise(self):
        model = DenoisingAutoencoder(make_encoder(), noise_stddev=0.0)
        model.compile(optimizer="adam")
        x = images(6)
        recon = model.decoder(model.encoder(x)).numpy()
        expected = np.mean((recon - x / 255.0) ** 2)
        self.assertAllClose(model.evaluate(x, batch_size=6, verbose=0), expected, atol=1e-6, rtol=1e-5)
        self.assertAllClose(model.reconstruct(x), recon * 255.0, atol=1e-3)

    def test_corruptions(self):
        x01 = np.full((64, 8, 8, 1), 0.5, dtype="float32")
        gaussian = DenoisingAutoencoder(make_encoder(), noise_stddev=0.2, seed=1)
        corrupted, weights = gaussian._corrupt(x01)
        self.assertAllClose(np.std(corrupted.numpy() - 0.5), 0.2, atol=0.01)
        self.assertAllClose(weights, np.ones_like(x01))
        masking = DenoisingAutoencoder(make_encoder(), corruption="masking", mask_rate=0.3, seed=1)
        corrupted, _ = masking._corrupt(x01)
        self.assertAllClose(np.mean(corrupted.numpy() == 0.0), 0.3, atol=0.03)

    def test_errors(self):
        enc = make_encoder()
        self.assertRaisesValueError("`corruption`", DenoisingAutoencoder, enc, corruption="blur")
        self.assertRaisesValueError("noise_stddev=-1", DenoisingAutoencoder, enc, noise_stddev=-1)
        self.assertRaisesValueError("mask_rate=1.0", DenoisingAutoencoder, enc, mask_rate=1.0)
        self.assertRaisesValueError("`value_range`", DenoisingAutoencoder, enc, value_range=(1, 1))
        self.assertRaisesValueError("`decoder` must be a Keras", DenoisingAutoencoder, enc, decoder="mlp")
        self.assertRaisesValueError("`decoder_hidden_dim`", DenoisingAutoencoder, enc, decoder_hidden_dim=0)
        model = DenoisingAutoencoder(enc)
        model.compile(optimizer="adam")
        self.assertRaisesValueError(
            ["rank 4", "x.shape=(4, 8, 8)"], model.fit, images()[..., 0], batch_size=4, verbose=0
        )


class MaskedImputationTest(TestCase):
    def test_patch_mask(self):
        model = MaskedImputation(make_encoder(), mask_rate=0.4, patch_size=4, seed=3)
        x01 = np.ones((200, 8, 8, 1), dtype="float32")
        corrupted, hidden = model._corrupt(x01)
        hidden = hidden.numpy()
        blocks = hidden.reshape(200, 2, 4, 2, 4)
        self.assertTrue(np.all(blocks == blocks[:, :, :1, :, :1]))  # whole 4x4 patches
        self.assertAllClose(hidden.mean(), 0.4, atol=0.04)
        self.assertAllClose(corrupted, 1.0 - hidden)

    def test_loss_counts_hidden_entries_only(self):
        # mask_rate ~ 1 hides everything: the loss is the MSE of reconstructing x from the fill value.
        model = MaskedImputation(make_encoder(), mask_rate=0.999999, patch_size=2, fill_value=0.5)
        model.compile(optimizer="adam")
        x = images(4)
        recon = model.decoder(model.encoder(np.full_like(x, 127.5))).numpy()
        self.assertAllClose(
            model.evaluate(x, batch_size=4, verbose=0), np.mean((recon - x / 255.0) ** 2), atol=1e-6, rtol=1e-5
        )

    def test_vectors(self):
        encoder = keras.Sequential([keras.Input((10,)), keras.layers.Dense(4, activation="tanh")])
        model = MaskedImputation(encoder, mask_rate=0.3, value_range=(0, 1))
        model.compile(optimizer="adam")
        x = np.random.default_rng(0).uniform(size=(16, 10)).astype("float32")
        self.run_fit_test(model, x, batch_size=8)
        _, hidden = model._corrupt(np.ones((400, 10), "float32"))
        self.assertAllClose(np.mean(hidden), 0.3, atol=0.03)

    def test_errors(self):
        enc = make_encoder()
        self.assertRaisesValueError(["`patch_size` must divide", "patch_size=3"], MaskedImputation, enc, patch_size=3)
        self.assertRaisesValueError("mask_rate=0", MaskedImputation, enc, mask_rate=0)
        self.assertRaisesValueError("`patch_size` must be a positive", MaskedImputation, enc, patch_size=0)
        model = MaskedImputation(enc)
        model.compile(optimizer="adam")
        self.assertRaisesValueError("no labels needed", model.fit, (images(), images()), batch_size=4, verbose=0)
