import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from keras_transfer.utils import distributed
from tests.test_case import TestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_distributed_probe.py")


def run_probe(*splits):
    # Logical devices must be set before TF initialises: a fresh process keeps
    # this pytest process (and its other tests) on the default single device.
    output = subprocess.run(
        [sys.executable, PROBE, *map(str, splits)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    lines = [line.split(" ", 2) for line in output.stdout.splitlines() if line.startswith("RESULT ")]
    if output.returncode != 0 or len(lines) != len(splits):
        raise AssertionError(f"probe failed:\n{output.stdout}\n{output.stderr[-3000:]}")
    return {int(split): json.loads(text) for _, split, text in lines}


class DistributedSingleDeviceTest(TestCase):
    def test_identity_outside_replicas(self):
        x = tf.constant(np.arange(6, dtype="float32").reshape(3, 2))
        self.assertAllClose(distributed.all_gather_with_grad(x), x)
        self.assertEqual(int(distributed.replica_offset(x)), 0)
        self.assertAllClose(distributed.global_batch_labels(x), np.arange(3))
        self.assertEqual(distributed.num_replicas(), 1)
        self.assertEqual(int(distributed.global_batch_size(x)), 3)
        self.assertAllClose(distributed.global_mean(tf.constant(6.0), 3), 2.0)

    def test_gradient_passes_through(self):
        x = tf.Variable(np.ones((2, 2), dtype="float32"))
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(distributed.all_gather_with_grad(x) * 3.0)
        self.assertAllClose(tape.gradient(y, x), np.full((2, 2), 3.0))


class DistributedMirroredTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.results = run_probe(3, 5)

    def check(self, result, expected_labels, expected_offsets):
        # Reference: the same loss on one device over the same global batch.
        self.assertEqual(result["num_replicas"], [2])
        self.assertEqual(result["global_size"], [5, 5])
        self.assertEqual(result["labels"], expected_labels)
        self.assertEqual(result["offsets"], expected_offsets)
        self.assertTrue(result["gathered_equal_reference"])
        self.assertAllClose(result["loss_sum"], result["reference_loss"], atol=1e-5, rtol=1e-5)
        self.assertAllClose(np.array(result["grad_sum"]), np.array(result["reference_grad"]), atol=1e-5, rtol=1e-5)
        self.assertEqual(result["default_offset"], 0)
        self.assertEqual(result["default_replicas"], 1)

    def test_unequal_replica_batches_match_single_device(self):
        self.check(self.results[3], [[0, 1, 2], [3, 4]], [0, 3])

    def test_empty_replica_matches_single_device(self):
        # A final partial batch can leave one replica with no rows.
        self.check(self.results[5], [[0, 1, 2, 3, 4], []], [0, 5])
