import numpy as np

from keras_transfer.utils import validation
from tests.test_case import TestCase


class ValidationTest(TestCase):
    def test_numbers(self):
        self.assertEqual(validation.check_positive_int("n", np.int64(3)), 3)
        for bad in (0, -1, 1.5, True, "2", None):
            self.assertRaisesValueError(
                ["`n` must be a positive integer", f"Received: n={bad!r}"], validation.check_positive_int, "n", bad
            )
        self.assertEqual(validation.check_non_negative_int("n", 0), 0)
        self.assertRaisesValueError(["non-negative integer", "n=-1"], validation.check_non_negative_int, "n", -1)
        self.assertEqual(validation.check_int_at_least("k", 2, 2), 2)
        self.assertRaisesValueError(
            ["an integer >= 2", "k=1", "Fix it."], validation.check_int_at_least, "k", 1, 2, "Fix it."
        )
        self.assertEqual(validation.check_positive_float("lr", 1), 1.0)
        for bad in (0, -1e-3, float("inf"), float("nan"), True, "0.1"):
            self.assertRaisesValueError(
                ["`lr` must be a positive finite number"], validation.check_positive_float, "lr", bad
            )
        self.assertEqual(validation.check_non_negative_float("m", 0), 0.0)
        self.assertRaisesValueError(["non-negative finite", "m=-2"], validation.check_non_negative_float, "m", -2)

    def test_fraction(self):
        self.assertEqual(validation.check_fraction("p", 0), 0.0)
        self.assertRaisesValueError(["`p` must be a number in [0, 1)", "p=1"], validation.check_fraction, "p", 1)
        self.assertEqual(validation.check_fraction("p", 1, inclusive_high=True), 1.0)
        self.assertRaisesValueError(
            ["(0, 1]", "p=0"], validation.check_fraction, "p", 0, inclusive_low=False, inclusive_high=True
        )
        self.assertRaisesValueError(["p=True"], validation.check_fraction, "p", True)

    def test_one_of(self):
        self.assertEqual(validation.check_one_of("mode", "a", ("a", "b")), "a")
        self.assertRaisesValueError(
            ["`mode` must be one of ['a', 'b']", "mode='c'", "Try a."],
            validation.check_one_of,
            "mode",
            "c",
            ("a", "b"),
            "Try a.",
        )
        self.assertRaisesValueError(["one of [1, 3]"], validation.check_one_of, "c", 2, {3, 1})

    def test_labels(self):
        np.testing.assert_array_equal(validation.check_labels([0, 2, 1], 3), [0, 2, 1])
        np.testing.assert_array_equal(validation.check_labels(np.array([[1], [0]]), 2), [1, 0])
        out = validation.check_labels(np.array([1.0, 0.0]), 2)
        self.assertEqual(out.dtype, np.int64)
        self.assertRaisesValueError(["`y` must not be empty", "(0,)"], validation.check_labels, [], 3)
        self.assertRaisesValueError(["1-D", "(2, 3)", "np.argmax"], validation.check_labels, np.eye(2, 3), 3)
        self.assertRaisesValueError(
            ["integer class ids", "float64", "0.5"], validation.check_labels, np.array([0.5, 1.0]), 3
        )
        self.assertRaisesValueError(["integer class ids", "nan"], validation.check_labels, np.array([np.nan]), 3)
        self.assertRaisesValueError(
            ["[0, 3)", "num_classes=3", "[0, 3]", "Re-index"], validation.check_labels, [0, 3], 3
        )
        self.assertRaisesValueError(["`t`", "[-1, 0]"], validation.check_labels, [-1, 0], 3, name="t")

    def test_finite_and_empty(self):
        x = np.ones((2, 2), "float32")
        self.assertIs(validation.check_finite(x), x)
        validation.check_finite(np.array([1, 2]))  # integers are always finite
        bad = x.copy()
        bad[0, 0], bad[1, 1] = np.nan, np.inf
        self.assertRaisesValueError(
            ["`x` must contain only finite values", "2 NaN or infinite"], validation.check_finite, bad
        )
        self.assertRaisesValueError(
            ["`data` must contain at least one example", "empty data"], validation.check_not_empty, [], "data"
        )
        self.assertEqual(validation.check_not_empty([1], "d"), [1])
