"""Every bad-input case ends in a clear answer, and the README's table is generated from them."""

from tests.reliability import bad_inputs
from tests.test_case import TestCase


class BadInputsTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.outcomes = {(c, given): bad_inputs.outcome(call) for c, given, call in bad_inputs.CASES}

    def test_every_error_is_a_value_error_naming_what_was_received(self):
        for (capability, given), outcome in self.outcomes.items():
            with self.subTest(capability=capability, input=given):
                if outcome.startswith("`TerminateOnNaN`"):
                    continue
                self.assertTrue(outcome.startswith("ValueError: `"), outcome)
                self.assertIn("Received", outcome)

    def test_nan_inputs_stop_training_at_the_first_batch(self):
        nan_cases = [o for (c, given), o in self.outcomes.items() if given.startswith("NaN inputs in `fit`")]
        self.assertLen(nan_cases, 3)
        for outcome in nan_cases:
            self.assertIn("stops `fit` at batch 0, logged loss nan", outcome)

    def test_readme_table_is_generated_from_these_cases(self):
        self.assertEqual(
            bad_inputs.readme_table(),
            bad_inputs.table(),
            "README's bad-input table is stale: run `python -m tests.reliability.bad_inputs --write`",
        )
