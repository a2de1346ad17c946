"""Confidence intervals for accuracies and for the paired difference of two accuracies."""

import numpy as np
from scipy import stats

from keras_transfer.utils import validation


def _z(confidence):
    confidence = validation.check_fraction(
        "confidence", confidence, inclusive_low=False, fix="Pass e.g. confidence=0.95 for 95% intervals."
    )
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def _counts(name, value):
    value = np.asarray(value, dtype="float64")
    if not np.all(np.isfinite(value)) or np.any(value < 0) or np.any(value != np.round(value)):
        raise ValueError(f"`{name}` must hold non-negative integer counts. Received: {name}={value.tolist()!r}")
    return value


def wilson_interval(successes, n, confidence=0.95):
    """Wilson's score interval for a proportion (an accuracy `successes / n`).

    The interval is the set of proportions `p` whose score test
    `|successes / n - p| <= z sqrt(p (1 - p) / n)` does not reject, `z` the normal
    quantile of `(1 + confidence) / 2`; unlike the Wald interval it stays inside
    [0, 1] and keeps its coverage near 0 and 1 and for small `n`. Vectorised over
    arrays of counts.

    Args:
        successes: number of successes (correct predictions), an int or array.
        n: number of trials (examples), an int or array of positive values.
        confidence: the coverage, in (0, 1).

    Returns:
        `(low, high)`, floats or float64 arrays shaped like the inputs.

    Raises:
        ValueError: if the counts are not non-negative integers, `n` is 0 or smaller
            than `successes`, or `confidence` is outside (0, 1).

    Reference:
        Wilson, "Probable inference, the law of succession, and statistical
        inference", JASA 22(158), 1927.

    Example:

    >>> low, high = keras_transfer.recipes.wilson_interval(81, 263)
    >>> round(low, 4), round(high, 4)
    (0.2553, 0.3662)
    """
    z = _z(confidence)
    k, n = _counts("successes", successes), _counts("n", n)
    if np.any(n < 1) or np.any(k > n):
        raise ValueError(
            f"`n` must be positive and at least `successes`. Received: n={n.tolist()!r}, successes={k.tolist()!r}"
        )
    center = (k + z * z / 2.0) / (n + z * z)
    half = z / (n + z * z) * np.sqrt(k * (n - k) / n + z * z / 4.0)
    low, high = np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def paired_difference_interval(both, first_only, second_only, neither, confidence=0.95):
    """Newcombe's score interval for the difference of two paired proportions.

    Two classifiers predict the same `n` examples; the 2x2 table counts the examples
    both get right (`both`), only the first (`first_only`), only the second
    (`second_only`) and neither (`neither`). The accuracy difference
    `D = p1 - p2 = (first_only - second_only) / n` gets Newcombe's method 10
    (square-and-add of the Wilson intervals `(l1, u1)` of `p1` and `(l2, u2)` of
    `p2`, corrected for the pairing):

        low  = D - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2)
        high = D + sqrt((p2 - l2)^2 - 2 phi (p2 - l2)(u1 - p1) + (u1 - p1)^2)

    with `phi` the correlation of the table, its numerator `A = both * neither -
    first_only * second_only` replaced by `A - n/2` when `A > n/2`, by 0 when
    `0 <= A <= n/2`, and `phi = 0` when a margin is empty. Paired data give narrower
    intervals than treating the two accuracies as independent samples.

    Args:
        both: examples both classifiers get right (int or array).
        first_only: examples only the first gets right.
        second_only: examples only the second gets right.
        neither: examples neither gets right.
        confidence: the coverage, in (0, 1).

    Returns:
        `(difference, low, high)`: floats or float64 arrays shaped like the inputs.

    Raises:
        ValueError: if the counts are not non-negative integers, a table is empty,
            or `confidence` is outside (0, 1).

    Reference:
        Newcombe, "Improved confidence intervals for the difference between binomial
        proportions based on paired data", Statistics in Medicine 17(22), 1998.

    Example:

    >>> d, low, high = keras_transfer.recipes.paired_difference_interval(59, 6, 16, 80)
    >>> round(d, 4), round(low, 4), round(high, 4)
    (-0.0621, -0.1186, -0.0046)
    """
    z_check = _z(confidence)  # validates confidence before the counts
    del z_check
    a, b = _counts("both", both), _counts("first_only", first_only)
    c, d = _counts("second_only", second_only), _counts("neither", neither)
    n = a + b + c + d
    if np.any(n < 1):
        raise ValueError(
            "The paired table must count at least one example. Received: "
            f"both={a.tolist()}, first_only={b.tolist()}, second_only={c.tolist()}, neither={d.tolist()}"
        )
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence)
    l2, u2 = wilson_interval(a + c, n, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    numerator = a * d - b * c
    numerator = np.where(numerator > n / 2.0, numerator - n / 2.0, np.where(numerator >= 0, 0.0, numerator))
    phi = np.where(margins > 0, numerator / np.sqrt(np.where(margins > 0, margins, 1.0)), 0.0)
    diff = p1 - p2
    low = diff - np.sqrt(np.maximum((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    high = diff + np.sqrt(np.maximum((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0))
    if np.ndim(diff) == 0:
        return float(diff), float(low), float(high)
    return diff, low, high
