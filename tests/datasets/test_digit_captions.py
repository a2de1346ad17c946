import re

import numpy as np

from keras_transfer.datasets import HELDOUT_TEMPLATES
from keras_transfer.datasets import TRAIN_TEMPLATES
from keras_transfer.datasets import digit_class_names
from keras_transfer.datasets import load_digit_captions
from keras_transfer.datasets import load_digits
from keras_transfer.datasets.digit_captions import make_captions
from tests.test_case import TestCase


def template_of(caption, templates, name_pattern):
    for t in templates:
        regex = "^" + re.escape(t).replace(r"\{\}", f"({name_pattern})") + "$"
        match = re.match(regex, caption)
        if match:
            return t, match.group(1)
    return None, None


class DigitCaptionsTest(TestCase):
    def test_split_and_captions(self):
        (xtr, ctr, ytr), (xte, cte, yte) = load_digit_captions(image_size=8)
        (xtr2, ytr2), (xte2, yte2) = load_digits(image_size=8)
        np.testing.assert_array_equal(xtr, xtr2)
        np.testing.assert_array_equal(yte, yte2)
        self.assertEqual(len(ctr), len(xtr))
        self.assertEqual(len(cte), len(xte))
        words = digit_class_names("word")
        numerals = digit_class_names("numeral")
        names = "|".join(words + numerals)
        for captions, labels, templates in ((ctr, ytr, TRAIN_TEMPLATES), (cte, yte, HELDOUT_TEMPLATES)):
            for caption, y in zip(captions, labels):
                t, name = template_of(caption, templates, names)
                self.assertIsNotNone(t, caption)
                self.assertIn(name, (words[y], numerals[y]))
        self.assertFalse(set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES))
        numeral_share = np.mean([any(n in c.split() for n in numerals) for c in ctr])
        self.assertGreater(numeral_share, 0.4)
        self.assertLess(numeral_share, 0.6)
        (_, again, _), _ = load_digit_captions(image_size=8)
        np.testing.assert_array_equal(ctr, again)

    def test_errors(self):
        self.assertRaisesValueError("`style` must be one of", digit_class_names, "roman")
        self.assertRaisesValueError("digit classes in [0, 9]", make_captions, [3, 10], TRAIN_TEMPLATES)
        self.assertRaisesValueError("exactly one '{}'", make_captions, [3], ["no placeholder"])
