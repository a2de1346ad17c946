import numpy as np

from keras_transfer.datasets import sinusoid_task_dataset
from keras_transfer.datasets import sinusoid_tasks
from tests.test_case import TestCase


class SinusoidTest(TestCase):
    def test_tasks_follow_finn_et_al(self):
        ((sx, sy, qx), qy), (amp, phase) = sinusoid_tasks(2000, 10, 7, seed=0, return_parameters=True)
        self.assertEqual(sx.shape, (2000, 10, 1))
        self.assertEqual(qy.shape, (2000, 7, 1))
        self.assertTrue(np.all((amp >= 0.1) & (amp <= 5.0)))
        self.assertTrue(np.all((phase >= 0) & (phase <= np.pi)))
        self.assertTrue(np.all(np.abs(sx) <= 5) and np.all(np.abs(qx) <= 5))
        self.assertAllClose(sy, amp[:, None, None] * np.sin(sx - phase[:, None, None]), atol=1e-5)
        self.assertAllClose(qy, amp[:, None, None] * np.sin(qx - phase[:, None, None]), atol=1e-5)
        self.assertAllClose(amp.mean(), 2.55, atol=0.1)  # mean of U[0.1, 5]

    def test_dataset_is_seeded_and_in_range(self):
        a = next(iter(sinusoid_task_dataset(25, 10, 10, seed=3)))
        b = next(iter(sinusoid_task_dataset(25, 10, 10, seed=3)))
        (sx, sy, qx), qy = a
        self.assertEqual(tuple(sx.shape), (25, 10, 1))
        self.assertAllClose(sx, b[0][0], atol=0)
        self.assertTrue(np.all(np.abs(qy.numpy()) <= 5.0))
        # y / A = sin(x - phase): check amplitude via max over many x of one task in range.
        self.assertTrue(np.all(np.abs(sy.numpy()) <= 5.0 + 1e-6))

    def test_errors(self):
        self.assertRaisesValueError("k_shot", sinusoid_tasks, 3, k_shot=0)
        self.assertRaisesValueError("num_tasks", sinusoid_task_dataset, 0)
