"""The image-folder pipeline benchmark's --quick mode, so that it cannot rot."""

from benchmarks import image_folder_pipeline
from tests.test_case import TestCase


class ImageFolderPipelineQuickTest(TestCase):
    def test_quick(self):
        results = image_folder_pipeline.main(["--quick"])
        (rates,) = results["pipeline"]
        self.assertEqual(set(rates), {"ours", "plain", "check"})
        self.assertTrue(all(value > 0 for value in rates.values()))
        self.assertGreater(results["steps"][0], 0)
        self.assertTrue(all(len(v) == 1 and v[0] > 0 for v in results["seconds"].values()))
        self.assertEqual(results["memory"], [])  # the memory runs (fresh processes) are left to the full run
