"""Two replicas equal one device: every custom-`train_step` model and the fine-tune recipe.

`_mirrored_probe.py` (a subprocess: the two logical CPU devices must exist before
TensorFlow initialises) trains each model of the zoo twice on the same global batches
(2 epochs x 2 steps, no shuffling): on one device and under
`tf.distribute.MirroredStrategy` over two logical CPUs (half of every global batch per
replica). The logged losses and all weights after training (queues, key encoders and
pointers included) must agree, and every mirrored weight must hold the same value on
both devices. SimCLR, CLIP and DANN have their own probes in tests/models.
"""

import os

from tests.test_case import TestCase
from tests.test_case import run_probe

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Plain SGD everywhere (weights differ by the gradients); the fine-tune recipe runs
# Adam, whose update divides by sqrt(v) and magnifies float rounding in small gradients.
WEIGHT_ATOL = {"fine_tune": 2e-5, "MoCo": 1e-5}
EXACT = (
    "MoCo",
    "MetaModel",
    "ProtoNet",
    "BlackBoxLearner",
    "DeepCORAL",
    "RotationPrediction",
    "DenoisingAutoencoder",
    "MaskedImputation",
    "fine_tune",
)


class MirroredStrategyTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.result = run_probe(os.path.join(HERE, "_mirrored_probe.py"), timeout=600)

    def test_two_replicas(self):
        self.assertEqual(self.result["replicas"], 2)

    def test_two_replicas_equal_one_device(self):
        for name in EXACT:
            with self.subTest(model=name):
                result = self.result["results"][name]
                self.assertNotIn("error", result, result.get("error"))
                self.assertEqual(result["start_diff"], 0.0)
                self.assertAllClose(result["losses"], result["reference_losses"], atol=1e-6, rtol=1e-6)
                self.assertLess(result["max_weight_diff"], WEIGHT_ATOL.get(name, 1e-6), result["worst_weight"])
                self.assertEqual(result["replica_spread"], 0.0)  # mirrored copies in sync
                # Not vacuous: training moved the weights far more than the tolerance.
                self.assertGreater(result["max_weight_change"], 1e-2)

    def test_moco_shuffle_bn_key_side_in_sync(self):
        # BatchNorm in the encoder, bn_splits=2: every replica computes the keys of the
        # global batch as one device does, so the key encoder (moving statistics included),
        # the queue and its pointer stay identical on both devices. The QUERY encoder's
        # BatchNorm normalises each replica's half with its own statistics (Keras's
        # BatchNormalization under tf.distribute), so its moving statistics differ between
        # the devices and training is close to, not equal to, one device.
        result = self.result["results"]["MoCo_shuffle_bn"]
        self.assertNotIn("error", result, result.get("error"))
        self.assertEqual(result["replica_spread_outside_query_encoder"], 0.0)
        self.assertGreater(result["replica_spread"], 0.0)
        self.assertLess(result["max_weight_diff"], 0.05)
        self.assertAllClose(result["losses"], result["reference_losses"], atol=0.05)
