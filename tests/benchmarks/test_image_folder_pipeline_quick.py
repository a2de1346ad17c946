"""The image-folder pipeline benchmark's --quick mode, so that it cannot rot."""

from benchmarks import image_folder_pipeline
from tests.test_case import TestCase


class ImageFolderPipelineQuickTest(TestCase):
    def test_quick(self):
        results = image_folder_pipeline.main(["--quick"])
        (rates,) = results["pipeline"]
        self.assertEqual(set(rates), {"ours", "plain", "check"})
        self.assertTrue(all(value > 0 for value in rates.values()))
        self.assertGreater(results["steps"]["mixed_bfloat16"][0], 0)  # the policy path; float32 in the full run
        for part in ("seconds", "fine_tuning"):
            self.assertTrue(all(len(v) == 1 and v[0] > 0 for v in results[part].values()))
        self.assertTrue(all(t < s for t, s in zip(results["fine_tuning"]["job"], results["seconds"]["job"])))
        self.assertEqual(results["trained"]["job"], results["trained"]["plain"])  # the same weights fine-tune
        self.assertEqual(results["memory"], [])  # the memory runs (fresh processes) are left to the full run
