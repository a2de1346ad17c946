import numpy as np

from keras_transfer.datasets import multi_task_dataset
from keras_transfer.datasets import sampling_ratios
from tests.test_case import TestCase


def tasks(sizes=(300, 60, 20), features=3):
    """Task i: x rows i*1000 + row index (so every row names its task and example), labels row % (i + 2)."""
    out = {}
    for i, n in enumerate(sizes):
        x = (i * 1000 + np.arange(n, dtype="float32"))[:, None] * np.ones((1, features), "float32")
        out[f"task_{i}"] = (x, np.arange(n) % (i + 2))
    return out


class MultiTaskDatasetTest(TestCase):
    def realised_fractions(self, data, n_tasks):
        counts = np.zeros(n_tasks)
        for x, _ in data:
            counts += np.bincount(x["task"].numpy(), minlength=n_tasks)
        return counts / counts.sum(), counts.sum()

    def test_realised_ratios_match_the_requested_ones(self):
        sizes = (300, 60, 20)
        n = np.array(sizes, "float64")
        expected = {
            "proportional": n / n.sum(),
            "uniform": np.full(3, 1 / 3),
            "temperature": n**0.5 / (n**0.5).sum(),
            "dict": np.array([1.0, 1.0, 2.0]) / 4.0,
        }
        for sampling, p in expected.items():
            requested = {"task_0": 1, "task_1": 1, "task_2": 2} if sampling == "dict" else sampling
            self.assertAllClose(list(sampling_ratios(dict(zip(tasks(), sizes)), requested).values()), p)
            data = multi_task_dataset(tasks(sizes), requested, batch_size=64, seed=3, steps=60)
            realised, total = self.realised_fractions(data, 3)
            # 3840 independent draws: within 4 binomial standard deviations of each ratio.
            tolerance = 4 * np.sqrt(p * (1 - p) / total)
            self.assertTrue(np.all(np.abs(realised - p) < tolerance), f"{sampling}: {realised} vs {p}")

    def test_batches_pair_each_example_with_its_task_and_label(self):
        data = multi_task_dataset(tasks(), "uniform", batch_size=16, seed=0)
        self.assertEqual(len(data), int(np.ceil(380 / 16)))
        batches = list(data)
        self.assertEqual(len(batches), len(data))
        for x, y in batches:
            self.assertEqual(x["inputs"].shape, (16, 3))
            self.assertEqual((x["task"].dtype.name, y.dtype.name), ("int32", "int64"))
            rows = x["inputs"].numpy()[:, 0]
            task = x["task"].numpy()
            self.assertAllClose(rows // 1000, task)  # the task id names the example's own task
            self.assertAllClose(y.numpy(), (rows % 1000) % (task + 2))  # with its own label
        mixed = [len(np.unique(x["task"].numpy())) for x, _ in batches]
        self.assertGreater(max(mixed), 1)  # batches hold several tasks
        # Seeded: the same seed gives the same stream.
        again = [x["inputs"].numpy() for x, _ in multi_task_dataset(tasks(), "uniform", batch_size=16, seed=0)]
        for (x, _), other in zip(batches, again):
            self.assertAllClose(x["inputs"].numpy(), other, atol=0, rtol=0)

    def test_bad_tasks(self):
        good = tasks()
        self.assertRaisesValueError("`tasks` must be a non-empty dict", multi_task_dataset, {})
        self.assertRaisesValueError("`tasks` must be a non-empty dict", multi_task_dataset, [good["task_0"]])
        empty = dict(good, task_1=(np.zeros((0, 3), "float32"), np.zeros(0, "int64")))
        self.assertRaisesValueError(
            ["`tasks['task_1']` must contain at least one example", "Received: an empty x"], multi_task_dataset, empty
        )
        short = dict(good, task_2=(good["task_2"][0], good["task_2"][1][:5]))
        self.assertRaisesValueError("len(x)=20, len(y)=5", multi_task_dataset, short)
        nan = good["task_0"][0].copy()
        nan[4, 1] = np.nan
        self.assertRaisesValueError(
            "`tasks['task_0'] x` must contain only finite values",
            multi_task_dataset,
            dict(good, task_0=(nan, good["task_0"][1])),
        )
        wide = dict(good, task_1=(np.zeros((60, 4), "float32"), good["task_1"][1]))
        self.assertRaisesValueError(["same feature shape and dtype", "(4,)"], multi_task_dataset, wide)
        for labels in (-good["task_1"][1], good["task_1"][1] + 0.5, np.eye(60)):
            self.assertRaisesValueError(
                "`tasks['task_1'] y` must be a 1-D array of non-negative integer class ids",
                multi_task_dataset,
                dict(good, task_1=(good["task_1"][0], labels)),
            )
        self.assertRaisesValueError(
            "`tasks['task_0']` must be an `(x, y)` pair", multi_task_dataset, {"task_0": np.zeros(3)}
        )

    def test_bad_sampling_and_sizes(self):
        good = tasks()
        self.assertRaisesValueError(
            ["`sampling` must be one of ['proportional', 'uniform', 'temperature']", "sampling='even'"],
            multi_task_dataset,
            good,
            "even",
        )
        self.assertRaisesValueError(
            ["name every task exactly once", "missing ['task_2']", "unknown ['other']"],
            multi_task_dataset,
            good,
            {"task_0": 1, "task_1": 1, "other": 1},
        )
        for ratios in ({"task_0": 1, "task_1": -1, "task_2": 1}, {"task_0": 0, "task_1": 0, "task_2": 0}):
            self.assertRaisesValueError(
                "non-negative finite numbers, at least one positive", multi_task_dataset, good, ratios
            )
        self.assertRaisesValueError(
            "`temperature` must be a positive", multi_task_dataset, good, "temperature", temperature=0
        )
        self.assertRaisesValueError("`batch_size` must be a positive integer", multi_task_dataset, good, batch_size=0)
        self.assertRaisesValueError("`steps` must be a positive integer", multi_task_dataset, good, steps=0)
