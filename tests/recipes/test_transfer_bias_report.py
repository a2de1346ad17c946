import os

import keras
import numpy as np

from keras_transfer import recipes
from tests.test_case import TestCase


def identity_model(num_classes):
    """A model whose outputs are its inputs: its predictions are argmax(x)."""
    return keras.Sequential([keras.Input((num_classes,)), keras.layers.Identity()])


def one_hot(ids, num_classes):
    return np.eye(num_classes, dtype="float32")[ids]


class TransferBiasReportTest(TestCase):
    def test_accuracies_and_intervals_match_numpy(self):
        rng = np.random.default_rng(0)
        y = rng.integers(0, 3, size=300)
        transferred = np.where(rng.random(300) < 0.7, y, rng.integers(0, 3, size=300))
        baseline = np.where(rng.random(300) < 0.6, y, rng.integers(0, 3, size=300))
        groups = rng.choice(["a", "b", "c"], size=300)
        report = recipes.transfer_bias_report(transferred, None, y, baseline=baseline, groups=groups)
        self.assertEqual(report.names, ["all", "class 0", "class 1", "class 2", "a", "b", "c"])
        masks = [np.ones(300, bool)] + [y == k for k in range(3)] + [groups == g for g in "abc"]
        for row, mask in zip(report, masks):
            t, b = transferred[mask] == y[mask], baseline[mask] == y[mask]
            self.assertEqual(row["n"], mask.sum())
            self.assertAlmostEqual(row["transferred"], t.mean(), places=12)
            self.assertAlmostEqual(row["baseline"], b.mean(), places=12)
            table = [np.sum(t & b), np.sum(t & ~b), np.sum(~t & b), np.sum(~t & ~b)]
            expected = recipes.paired_difference_interval(*table)
            self.assertAllClose([row["difference"], row["low"], row["high"]], expected, atol=1e-12)
            self.assertAlmostEqual(row["difference"], t.mean() - b.mean(), places=12)
            self.assertEqual(row["harmed"], expected[2] < 0)

    def test_flags_a_clearly_harmed_group_but_not_a_tiny_one(self):
        y = np.tile([0, 1], 110)
        baseline = y.copy()  # right everywhere
        transferred = y.copy()
        group = np.array(["big"] * 100 + ["tiny"] * 4 + ["fine"] * 116)
        transferred[:40] = 1 - y[:40]  # 40 of 100 wrong in "big"
        transferred[100:102] = 1 - y[100:102]  # 2 of 4 wrong in "tiny": a larger gap, but on 4 examples
        report = recipes.transfer_bias_report(transferred, None, y, baseline=baseline, groups=group)
        self.assertAlmostEqual(report["big"]["difference"], -0.4)
        self.assertAlmostEqual(report["tiny"]["difference"], -0.5)
        self.assertLess(report["tiny"]["low"], -0.5)
        self.assertGreater(report["tiny"]["high"], 0.0)  # 4 examples: the interval is wide and reaches 0
        self.assertEqual(report.harmed, ["all", "class 0", "class 1", "big"])
        self.assertFalse(report["fine"]["harmed"])

    def test_groups_as_dict_equal_groups_as_array(self):
        rng = np.random.default_rng(1)
        y = rng.integers(0, 2, size=60)
        transferred, baseline = rng.integers(0, 2, size=60), rng.integers(0, 2, size=60)
        labels = np.array([0, 1, 1] * 20)
        from_array = recipes.transfer_bias_report(transferred, None, y, baseline=baseline, groups=labels)
        masks = {"0": labels == 0, "1": labels == 1}
        from_dict = recipes.transfer_bias_report(transferred, None, y, baseline=baseline, groups=masks)
        self.assertEqual(from_array.rows, from_dict.rows)
        overlapping = recipes.transfer_bias_report(transferred, None, y, groups={"all again": np.ones(60, bool)})
        self.assertEqual(overlapping["all again"]["transferred"], overlapping["all"]["transferred"])
        self.assertIsNone(overlapping.reference)
        self.assertNotIn("difference", overlapping["all"])

    def test_models_run_on_x(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(50, 4)).astype("float32")
        y = rng.integers(0, 4, size=50)
        baseline_outputs = one_hot(y, 4)
        report = recipes.transfer_bias_report(
            identity_model(4), x, y, baseline=baseline_outputs, class_names=list("abcd"), batch_size=16
        )
        self.assertAlmostEqual(report["all"]["transferred"], np.mean(np.argmax(x, axis=1) == y), places=12)
        self.assertEqual(report["all"]["baseline"], 1.0)
        self.assertEqual(report.names[1:], [n for k, n in enumerate("abcd") if np.any(y == k)])

    def test_source_over_the_target_classes(self):
        y = np.tile([0, 1, 2], 30)
        source = np.where(np.arange(90) < 45, y, (y + 1) % 3)
        report = recipes.transfer_bias_report(y, None, y, source=source)
        self.assertEqual(report.reference, "source")
        self.assertAlmostEqual(report["all"]["source"], 0.5)
        self.assertAlmostEqual(report["all"]["difference"], 0.5)
        with_baseline = recipes.transfer_bias_report(y, None, y, baseline=y, source=source)
        self.assertEqual(with_baseline.reference, "baseline")
        self.assertAlmostEqual(with_baseline["all"]["source_difference"], 0.5)
        self.assertFalse(with_baseline["all"]["source_harmed"])

    def test_source_confidence_mode(self):
        rng = np.random.default_rng(3)
        y = rng.integers(0, 2, size=40)
        logits = rng.normal(size=(40, 7))
        groups = np.arange(40) % 2
        report = recipes.transfer_bias_report(y, None, y, source=logits, groups=groups, source_mode="confidence")
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        entropy = -(probabilities * np.log(probabilities)).sum(axis=1) / np.log(7)
        for name, mask in (("all", np.ones(40, bool)), ("1", groups == 1)):
            self.assertAlmostEqual(report[name]["source_entropy"], entropy[mask].mean(), places=10)
            self.assertAlmostEqual(report[name]["source_confidence"], probabilities[mask].max(axis=1).mean(), places=10)
        from_probabilities = recipes.transfer_bias_report(y, None, y, source=probabilities, source_mode="confidence")
        self.assertAlmostEqual(from_probabilities["all"]["source_entropy"], entropy.mean(), places=10)
        self.assertIsNone(report.reference)

    def test_markdown_and_plot(self):
        y = np.repeat([0, 1], 20)
        transferred = y.copy()
        transferred[:12] = 1
        report = recipes.transfer_bias_report(transferred, None, y, baseline=y, groups={"first half": y == 0})
        text = str(report)
        cells = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()]
        self.assertEqual(cells[3][:5], ["class", "class 0", "20", "0.400", "1.000"])
        self.assertRegex(cells[3][5], r"^-0\.600 \[-0\.\d{3}, -0\.\d{3}\]$")
        self.assertEqual(cells[3][6], "yes")
        self.assertIn("transferred - baseline [95% CI]", text)
        self.assertEqual(len(text.splitlines()), 2 + len(report))
        path = report.plot(os.path.join(self.get_temp_dir(), "forest.png"))
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(8), b"\x89PNG\r\n\x1a\n")
        no_reference = recipes.transfer_bias_report(transferred, None, y)
        self.assertRaisesValueError(["`plot`", "reference=None", "baseline="], no_reference.plot, path)

    def test_bad_input(self):
        y = np.array([0, 1, 0, 1])
        report = recipes.transfer_bias_report
        self.assertRaisesValueError(["`groups`", "shape (4,)", "shape (3,)"], report, y, None, y, groups=[0, 1, 0])
        self.assertRaisesValueError(["`groups`", "groups={}"], report, y, None, y, groups={})
        self.assertRaisesValueError(
            ["`groups`", "['b']", "Drop the empty"], report, y, None, y, groups={"a": y == 0, "b": y == 2}
        )
        self.assertRaisesValueError(["`groups`", "boolean masks"], report, y, None, y, groups={"a": [1, 0, 1, 0]})
        self.assertRaisesValueError(["`baseline`", "(4)", "Received: 3"], report, y, None, y, baseline=y[:3])
        self.assertRaisesValueError(["`x`", "x with 3 examples"], report, identity_model(2), np.eye(3, 2), y)
        nan_outputs = one_hot(y, 2)
        nan_outputs[1, 0] = np.nan
        self.assertRaisesValueError(["`transferred`", "NaN"], report, nan_outputs, None, y)
        nan_x = np.eye(4, 2, dtype="float32")
        nan_x[0, 0] = np.nan
        self.assertRaisesValueError(["`x`", "NaN"], report, identity_model(2), nan_x, y)
        self.assertRaisesValueError(
            ["`baseline`", "one score per target class (2)", "3 outputs", "Train the baseline"],
            report,
            identity_model(2),
            np.eye(4, 2),
            y,
            baseline=keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)]),
        )
        self.assertRaisesValueError(
            ["`transferred`", "(3)", "2 outputs"], report, one_hot(y, 2), None, y, class_names=["a", "b", "c"]
        )
        self.assertRaisesValueError(
            ["`source`", "linear probe", "source_mode='confidence'"], report, y, None, y, source=np.ones((4, 5))
        )
        for confidence in (0, 1, 1.5, -0.1):
            self.assertRaisesValueError(
                ["`confidence`", f"confidence={confidence!r}", "0.95"], report, y, None, y, confidence=confidence
            )
        self.assertRaisesValueError(["`y`", "[0, 2)", "[0, 5]"], report, one_hot(y, 2), None, [0, 1, 5, 1])
        self.assertRaisesValueError(["`source_mode`", "'entropy'"], report, y, None, y, source_mode="entropy")
        self.assertRaisesValueError(["`x` must be the target inputs"], report, identity_model(2), None, y)
        self.assertRaisesValueError(["`transferred`", "integer class ids", "0.5"], report, [0, 0.5, 1, 1], None, y)
        self.assertRaisesValueError(["`y`", "at least one example"], report, [], None, [])
        self.assertRaisesValueError(["`transferred`", "at least 2", "1 - p"], report, np.ones((4, 1)), None, y)
        self.assertRaisesValueError(["`class_names`", "['a']"], report, y, None, y, class_names=["a"])
