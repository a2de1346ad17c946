"""BarlowTwins and VICReg: two-view pre-training without negatives, on the shared `NonContrastivePretext` base."""

import keras
import numpy as np
import tensorflow as tf

from keras_transfer.models import BarlowTwins
from keras_transfer.models import VICReg
from tests.losses.test_barlow_twins_and_vicreg import numpy_barlow_twins
from tests.losses.test_barlow_twins_and_vicreg import numpy_vicreg
from tests.models.test_simclr import assert_nan_is_reported
from tests.models.test_simclr import make_encoder
from tests.models.test_simclr import make_pairs
from tests.models.test_simclr import nan_hiding_encoder
from tests.models.test_simclr import pairs_dataset
from tests.test_case import TestCase

MODELS = {
    "barlow_twins": (BarlowTwins, {"redundancy_weight": 0.2}, ("on_diagonal", "off_diagonal")),
    "vicreg": (VICReg, {}, ("invariance", "variance", "covariance")),
}


def numpy_loss(name, z1, z2):
    if name == "barlow_twins":
        return numpy_barlow_twins(z1, z2, 0.2)
    return numpy_vicreg(z1, z2)


class NonContrastiveTest(TestCase):
    def build(self, name, encoder=None, **kwargs):
        cls, defaults = MODELS[name][:2]
        model = cls(encoder or make_encoder(), projection_dim=4, **defaults, **kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        return model

    def test_loss_matches_numpy_and_reports_terms(self):
        v1, v2 = make_pairs(8)
        for name, (_, _, terms) in MODELS.items():
            model = self.build(name)
            z1 = model.projection_head(model.encoder(v1)).numpy()
            z2 = model.projection_head(model.encoder(v2)).numpy()
            result = model.evaluate(pairs_dataset(v1, v2, 8), verbose=0, return_dict=True)
            self.assertEqual(set(result), {"loss", *terms})
            self.assertAllClose(result["loss"], numpy_loss(name, z1, z2), atol=1e-4, rtol=1e-5, msg=name)

    def test_fit_save_and_export_after_reload(self):
        # The generic checks run for both models in the model zoo: a killed run resumed (and its
        # `.keras` file reloaded and fit on) ends as the uninterrupted run (tests/reliability/test_resume.py);
        # export straight after fit (tests/reliability/test_resume.py); one mixed-precision
        # step with float32 outputs (tests/reliability/test_mixed_precision.py; NaN: test_resume.py).
        v1, v2 = make_pairs(8)
        data = pairs_dataset(v1, v2, 8)
        for name in MODELS:
            model = self.build(name)
            self.run_fit_test(model, data)
            reloaded = self.run_serialization_test(model, v1, export_reloaded=True)
            for key, value in model.get_config().items():
                if not isinstance(value, dict):  # the weights' own settings (sub-models are compared by outputs)
                    self.assertEqual(reloaded.get_config()[key], value, key)
            self.assertAllClose(model.predict(v1, verbose=0), model.encoder.predict(v1, verbose=0))

    def test_nan_is_reported_and_mixed_precision_dtypes(self):
        # A NaN the forward pass hides (max pooling): the loss stays finite while the weights break.
        v1, v2 = make_pairs(16)
        bad = v1.copy()
        bad[0, 0, 0, 0] = np.nan
        for name in MODELS:
            assert_nan_is_reported(
                self,
                lambda name=name: self.build(name, encoder=nan_hiding_encoder()),
                pairs_dataset(bad, v2, 8),
                pairs_dataset(v1, v2, 8),
            )
        keras.config.set_dtype_policy("mixed_float16")  # tearDown restores float32
        for name in MODELS:
            self.assertEqual(self.build(name).encoder.compute_dtype, "float16")

    def test_bad_arguments_and_data(self):
        encoder = make_encoder()
        self.assertRaisesValueError(
            ["`redundancy_weight`", "redundancy_weight=-0.1"], BarlowTwins, encoder, redundancy_weight=-0.1
        )
        for weight in ("invariance_weight", "variance_weight", "covariance_weight"):
            self.assertRaisesValueError([f"`{weight}`", f"{weight}=-1"], VICReg, encoder, **{weight: -1})
        self.assertRaisesValueError(["`projection_dim`", "projection_dim=0"], VICReg, encoder, projection_dim=0)
        v1, v2 = make_pairs(4)
        for name in MODELS:
            model = self.build(name)
            self.assertRaisesValueError(["no `augmenter`", "simclr_dataset"], model.fit, v1, batch_size=4, verbose=0)
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "fewer than 2 pairs"):
                model.fit(pairs_dataset(v1[:1], v2[:1], 4), verbose=0)

    # The MirroredStrategy check (a step on 2 replicas equals one on one device) runs in the probe shared
    # with SimSiam, BYOL and DINO: tests/models/test_simsiam_and_byol.py.
