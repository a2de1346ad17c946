import contextlib
import io
import math
import os

from keras_transfer import cli
from keras_transfer.demos import choosing
from tests.test_case import TestCase


def in_unit_interval(value):
    return 0.0 <= value <= 1.0


class ChoosingDemoTest(TestCase):
    def test_quick_demo(self):
        out = self.get_temp_dir()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            results = cli._demo(
                cli.build_parser().parse_args(["demo", "--quick", "--sections", "choosing", "--output", out])
            )["choosing"]
        text = printed.getvalue()
        self.assertTrue(in_unit_interval(results["source_accuracy"]))

        # (1) Every candidate is ranked, best LogME first, each with a probe accuracy.
        ranking = results["ranking"]
        self.assertEqual(sorted(ranking["ranking"]), ["digits 0-4", "inverted digits 0-4", "random init"])
        scores = [ranking["logme"][name] for name in ranking["ranking"]]
        self.assertTrue(all(math.isfinite(s) for s in scores))
        self.assertEqual(scores, sorted(scores, reverse=True))
        self.assertTrue(all(in_unit_interval(a) for a in ranking["probe_accuracy"].values()))

        # (2) Each block choice has a validation accuracy; the chosen one is the best (ties: fewer blocks).
        blocks = results["blocks"]
        self.assertEqual(list(blocks["val_accuracy"]), ["first", "middle", "last", "all"])
        self.assertTrue(all(in_unit_interval(a) for a in blocks["val_accuracy"].values()))
        best = max(blocks["val_accuracy"].values())
        self.assertEqual(blocks["chosen"], next(k for k, v in blocks["val_accuracy"].items() if v == best))
        self.assertTrue(in_unit_interval(blocks["test_accuracy"]))

        # (3) Four cells, each method measured; (4) per-task accuracies; (5) both orders.
        table = results["when_to_transfer"]
        self.assertEqual(
            sorted(table), [("large", "different"), ("large", "similar"), ("small", "different"), ("small", "similar")]
        )
        for cell in table.values():
            self.assertEqual(list(cell), list(choosing.METHODS))
            self.assertTrue(all(in_unit_interval(a) for a in cell.values()))
        self.assertEqual(sorted(results["multi_task"]), ["digits_0_4", "digits_5_9"])
        self.assertTrue(all(in_unit_interval(a) for a in results["multi_task"].values()))
        self.assertEqual(sorted(results["curriculum"]), ["curriculum (easiest first)", "uniform batches"])
        self.assertTrue(all(in_unit_interval(a) for a in results["curriculum"].values()))

        # Printed tables, the same in the markdown report.
        for step in range(1, 6):
            self.assertIn(f"[{step}/5]", text)
        self.assertIn("| size", text)
        self.assertIn("| LogME rank | candidate", text)
        self.assertEqual(results["report"], os.path.join(out, "choosing", "choosing.md"))
        with open(results["report"], encoding="utf-8") as f:
            report = f.read()
        for step in range(1, 6):
            self.assertIn(f"## [{step}/5]", report)
        self.assertIn("| LogME rank | candidate", report)
