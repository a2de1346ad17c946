"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, 2022).

For the two views' embeddings Z, Z' (N x D), as in the official code:

- invariance: the mean squared difference `mean((Z - Z')^2)` over all N x D entries;
- variance: `mean_j relu(1 - sqrt(Var(Z[:, j]) + 1e-4))`, for each view (unbiased
  variance): a hinge that keeps every feature's standard deviation near 1 (no collapse);
- covariance: `sum_{i != j} Cov(Z)_ij^2 / D`, for each view (unbiased covariance):
  decorrelated features.

    L = invariance_weight * inv + variance_weight * (var(Z) + var(Z')) / 2
        + covariance_weight * (cov(Z) + cov(Z'))

(the official code averages the two views' variance terms and sums their covariance
terms); the paper's weights are 25, 25 and 1. Written by hand: neither Keras, keras-hub
nor keras-cv ship it.
"""

from keras import ops

from keras_transfer.losses.nt_xent import check_view_pair
from keras_transfer.ops.numerics import compute_dtype
from keras_transfer.utils.validation import check_non_negative_float

_EPSILON = 1e-4  # the official code's, inside the square root of the variance


def _variance_term(z):
    n = ops.cast(ops.shape(z)[0], z.dtype)
    centred = z - ops.mean(z, axis=0, keepdims=True)
    std = ops.sqrt(ops.sum(ops.square(centred), axis=0) / (n - 1.0) + _EPSILON)
    return ops.mean(ops.relu(1.0 - std)), centred


def _covariance_term(centred):
    n = ops.cast(ops.shape(centred)[0], centred.dtype)
    d = ops.cast(ops.shape(centred)[1], centred.dtype)
    cov = ops.matmul(ops.transpose(centred), centred) / (n - 1.0)
    return (ops.sum(ops.square(cov)) - ops.sum(ops.square(ops.diagonal(cov)))) / d


def vicreg_terms(z1, z2):
    """`(invariance, variance, covariance)` of a batch of view pairs (inputs already gathered, float):
    the mean squared difference, the mean of the two views' variance hinges and the sum of
    their covariance penalties, as the official code combines them."""
    invariance = ops.mean(ops.square(z1 - z2))
    variance_1, centred_1 = _variance_term(z1)
    variance_2, centred_2 = _variance_term(z2)
    covariance = _covariance_term(centred_1) + _covariance_term(centred_2)
    return invariance, 0.5 * (variance_1 + variance_2), covariance


def vicreg_loss(z1, z2, invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0):
    """VICReg's loss of a batch of view pairs.

    Args:
        z1: `(N, D)` embeddings (expander outputs) of the first views.
        z2: `(N, D)` embeddings of the second views of the same examples.
        invariance_weight: lambda, the weight of the mean squared difference (25).
        variance_weight: mu, the weight of the variance hinge (25).
        covariance_weight: nu, the weight of the covariance penalty (1).

    Returns:
        Scalar float32 (float64 for float64 inputs):
        `invariance_weight * mean((z1 - z2)^2) + variance_weight * (v(z1) + v(z2)) / 2
        + covariance_weight * (c(z1) + c(z2))`.

    Raises:
        ValueError: if the embeddings are not 2-D with the same shape, hold fewer than
            2 rows, or a weight is negative.

    Reference:
        Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization
        for Self-Supervised Learning", ICLR 2022.

    Example:

    >>> z = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], "float32")
    >>> round(float(keras_transfer.losses.vicreg_loss(z, z)), 4)  # std > 1, no covariance
    0.0
    """
    weights = [
        check_non_negative_float(name, value)
        for name, value in (
            ("invariance_weight", invariance_weight),
            ("variance_weight", variance_weight),
            ("covariance_weight", covariance_weight),
        )
    ]
    z1, z2 = check_view_pair(z1, z2)
    dtype = compute_dtype(z1)
    terms = vicreg_terms(ops.cast(z1, dtype), ops.cast(z2, dtype))
    return sum(w * t for w, t in zip(weights, terms))
