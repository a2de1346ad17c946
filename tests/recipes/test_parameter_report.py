import keras
import numpy as np

from keras_transfer.recipes import adapter_parameter_report
from keras_transfer.recipes import add_adapters
from keras_transfer.recipes import format_parameter_report
from keras_transfer.recipes import freezing
from keras_transfer.recipes import parameter_report
from keras_transfer.recipes import trainable_report
from tests.recipes.adapter_models import tiny_cnn
from tests.test_case import TestCase


class ParameterReportTest(TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cnn = tiny_cnn()

    def test_parameter_report_counts(self):
        adapted = add_adapters(self.cnn, keras.layers.Conv2D, "conv_series")
        report = adapter_parameter_report(adapted)
        base_total = self.cnn.count_params()
        self.assertEqual(report["added_params"], 8 * 8 + 8 * 8)
        self.assertEqual(report["total_params"], base_total + 128)
        head = 8 * 3 + 3
        self.assertEqual(report["trainable_params"], 128 + head)
        self.assertAlmostEqual(report["trainable_percent"], 100 * (128 + head) / (base_total + 128))
        self.assertAlmostEqual(report["added_percent"], 100 * 128 / base_total)
        lora = adapter_parameter_report(add_adapters(self.cnn, "conv1", "lora", rank=2))
        self.assertEqual(lora["adapters"][0]["params"], 3 * 3 * 3 * 2 + 2 * 8)
        text = format_parameter_report(report)
        self.assertIn("| backbone/conv1_adapter | ConvAdapter | 64 |", text)

    def test_trainable_report_is_the_same_count(self):
        self.assertIs(freezing.trainable_report, parameter_report.trainable_report)
        adapted = add_adapters(self.cnn, keras.layers.Conv2D, "bottleneck", bottleneck_dim=4)
        counts, report = trainable_report(adapted), adapter_parameter_report(adapted)
        self.assertEqual(counts["total"], report["total_params"])
        self.assertEqual(counts["trainable"], report["trainable_params"])
        self.assertEqual(counts["total"], sum(int(np.prod(v.shape)) for v in adapted.weights))
        self.assertAlmostEqual(100 * counts["fraction"], report["trainable_percent"])
