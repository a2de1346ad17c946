"""Ganin et al.'s inter-twinning moons: a labelled source and a rotated, unlabelled target."""

import dataclasses
import math

import numpy as np

from keras_transfer.utils import validation


@dataclasses.dataclass
class MoonsDomains:
    """Source and target parts of the moons problem, as returned by `load_moons`.

    `x` is float32 `(n, 2)`, `y` int64 in {0, 1}. `target_train` is the unlabelled
    adaptation set: its labels are there for evaluation only and must not be given
    to the training of an unsupervised domain adaptation method.

    Attributes:
        source_train: `(x, y)`, the labelled source training set.
        source_test: `(x, y)`, a held-out source test set.
        target_train: `(x, y)`, the target adaptation set (use `x` only).
        target_test: `(x, y)`, a held-out target test set.
        angle: the rotation of the target in degrees.

    Example:

    >>> domains = keras_transfer.datasets.load_moons(n_samples=20, n_target=20, n_test=10)
    >>> x, y = domains.source_train
    >>> x.shape, y.shape, domains.angle
    ((20, 2), (20,), 35.0)
    """

    source_train: tuple
    source_test: tuple
    target_train: tuple
    target_test: tuple
    angle: float


def rotate(points, angle):
    """Rotates `(n, 2)` points counter-clockwise by `angle` degrees about the origin.

    Args:
        points: array-like `(n, 2)`.
        angle: degrees.

    Returns:
        A float64 array `(n, 2)`.
    """
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype="float64")
    return np.asarray(points, dtype="float64") @ rotation.T


def load_moons(n_samples=300, n_target=300, n_test=1000, angle=35.0, noise=0.05, scale=2.0, seed=0):
    """Inter-twinning moons: a labelled source and a rotated, unlabelled target.

    The toy problem of domain-adversarial training. The source holds two
    inter-twinning moons (`sklearn.datasets.make_moons`, `n_samples // 2` points
    per class), centred on the origin and scaled by `scale` (as in the authors'
    code). The target draws fresh moons from the same law and rotates them by
    `angle` degrees about the centre.

    Args:
        n_samples: labelled source points (the paper: 300, i.e. 150 + 150).
        n_target: unlabelled target points for adaptation (the paper: 300).
        n_test: labelled points of each held-out test set (source and target).
        angle: rotation of the target in degrees (the paper: 35).
        noise: standard deviation of the Gaussian noise of `make_moons`.
        scale: factor applied to the centred coordinates (positive).
        seed: seed of every draw.

    Returns:
        A `MoonsDomains` with `source_train`, `source_test`, `target_train`,
        `target_test`, each `(x float32 (n, 2), y int64)`.

    Raises:
        ValueError: if a count is too small, `noise` is negative, `scale` is
            not positive or `angle` is not a finite number.

    Reference:
        Ganin et al., "Domain-Adversarial Training of Neural Networks", JMLR
        2016 (§5.1).

    Example:

    >>> domains = keras_transfer.datasets.load_moons()
    >>> domains.source_train[0].shape, domains.target_train[0].shape
    ((300, 2), (300, 2))
    >>> domains.target_test[0].shape, domains.target_test[0].dtype
    ((1000, 2), dtype('float32'))
    """
    from sklearn.datasets import make_moons

    n_samples = validation.check_int_at_least("n_samples", n_samples, 2)
    n_target = validation.check_positive_int("n_target", n_target)
    n_test = validation.check_positive_int("n_test", n_test)
    noise = validation.check_non_negative_float("noise", noise)
    scale = validation.check_positive_float("scale", scale)
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not math.isfinite(angle):
        raise ValueError(f"`angle` must be a finite number of degrees. Received: angle={angle!r}")

    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=4)

    def draw(n, s):
        x, y = make_moons(n_samples=n, noise=noise, random_state=int(s))
        return x, y.astype("int64")

    xs, ys = draw(n_samples, seeds[0])
    centre = xs.mean(axis=0)
    xs_test, ys_test = draw(n_test, seeds[1])
    xt, yt = draw(n_target, seeds[2])
    xt_test, yt_test = draw(n_test, seeds[3])

    def source(x):
        return (scale * (x - centre)).astype("float32")

    def target(x):
        return rotate(scale * (x - centre), angle).astype("float32")

    return MoonsDomains(
        source_train=(source(xs), ys),
        source_test=(source(xs_test), ys_test),
        target_train=(target(xt), yt),
        target_test=(target(xt_test), yt_test),
        angle=float(angle),
    )
