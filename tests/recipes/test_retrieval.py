import numpy as np

from keras_transfer.recipes import retrieval_recall
from tests.test_case import TestCase


class RetrievalRecallTest(TestCase):
    def test_hand_computed_example(self):
        # Similarities (rows: images, columns: texts) on unit vectors in 2-D:
        angles_i = np.array([0.0, 1.0, 2.0])
        angles_t = np.array([0.1, 1.9, 1.05])  # text 1 is closest to image 2, text 2 to image 1
        image = np.stack([np.cos(angles_i), np.sin(angles_i)], 1) * np.array([[1], [3], [0.5]])
        text = np.stack([np.cos(angles_t), np.sin(angles_t)], 1)
        result = retrieval_recall(image, text, ks=(1, 2, 3))
        # image 0 -> text 0 (hit); image 1 -> text 2 then text 1 (own at rank 2); image 2 -> text 1, text 2 (own rank 3)
        self.assertAlmostEqual(result["image_to_text_recall@1"], 1 / 3)
        self.assertAlmostEqual(result["image_to_text_recall@2"], 2 / 3)
        self.assertAlmostEqual(result["image_to_text_recall@3"], 1.0)
        # text 0 -> image 0 (hit); text 1 -> image 2, image 1 (own rank 2); text 2 -> image 1, ... (own rank 2)
        self.assertAlmostEqual(result["text_to_image_recall@1"], 1 / 3)
        self.assertAlmostEqual(result["text_to_image_recall@2"], 1.0)

    def test_labels_match_any_item_of_the_same_class(self):
        image = np.eye(3)[[0, 0, 1, 2]]
        text = np.eye(3)[[0, 1, 1, 2, 0]] + 0.01
        labels_i, labels_t = np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2, 0])
        result = retrieval_recall(image, text, ks=(1,), image_labels=labels_i, text_labels=labels_t)
        self.assertEqual(result, {"image_to_text_recall@1": 1.0, "text_to_image_recall@1": 1.0})

    def test_errors(self):
        a = np.ones((3, 2))
        self.assertRaisesValueError("must be paired row by row", retrieval_recall, a, np.ones((4, 2)))
        self.assertRaisesValueError("same size", retrieval_recall, a, np.ones((3, 3)))
        self.assertRaisesValueError("non-empty 2-D array", retrieval_recall, np.ones((0, 2)), np.ones((0, 2)))
        self.assertRaisesValueError("`ks` must be a positive integer", retrieval_recall, a, a, ks=(0,))
        self.assertRaisesValueError("given together", retrieval_recall, a, a, image_labels=[0, 1, 2])
        self.assertRaisesValueError("one id per row", retrieval_recall, a, a, image_labels=[0], text_labels=[0])
        bad = a.copy()
        bad[0, 0] = np.nan
        self.assertRaisesValueError("finite", retrieval_recall, bad, a)
