import time

from keras_transfer.demos import meta_learning
from tests.test_case import TestCase


class MetaLearningDemoTest(TestCase):
    def test_quick_demo(self):
        start = time.perf_counter()
        results = meta_learning.run(self.get_temp_dir(), quick=True)
        self.assertLess(time.perf_counter() - start, 90)
        # Even after 3000 meta-iterations MAML adapts better than the pretrained regressor.
        self.assertLess(results["MAML"][10], results["pretrained + fine-tune"][10])
