"""Hacohen & Weinshall's pacing functions in exact rational arithmetic (the test's independent reference)."""

import math
from fractions import Fraction


def fixed_exponential(step, starting_fraction, increase, step_length):
    """min(starting_fraction * increase ** floor(step / step_length), 1), exactly."""
    return min(Fraction(starting_fraction) * Fraction(increase) ** (step // step_length), Fraction(1))


def single_step(step, starting_fraction, step_length):
    """starting_fraction ** 1[step < step_length], exactly."""
    return Fraction(starting_fraction) if step < step_length else Fraction(1)


def linear(step, starting_fraction, ramp_steps):
    """min(starting_fraction + (1 - starting_fraction) * step / ramp_steps, 1), exactly."""
    start = Fraction(starting_fraction)
    return min(start + (1 - start) * Fraction(step, ramp_steps), Fraction(1))


def count(fraction, num_examples):
    """ceil(fraction * N), at least 1."""
    return max(math.ceil(fraction * num_examples), 1)


def first_full_step(fraction_at, limit=100_000):
    return next(step for step in range(limit) if fraction_at(step) >= 1)
