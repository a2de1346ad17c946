"""LogME: the log marginal evidence of a Bayesian linear model on fixed features."""

import numpy as np

from keras_transfer.ops import transferability_inputs as inputs

# The fixed-point iteration stops when alpha and beta (or the evidence) change by less
# than this, relative; it converges in tens of iterations on typical features.
TOLERANCE = 1e-12
MAX_ITERATIONS = 10_000
_EPS = np.finfo("float64").eps
_TINY = np.finfo("float64").tiny
# u = beta / alpha and beta are kept in [_LOWEST, _HIGHEST]; the boundary limits take over beyond.
_LOWEST, _HIGHEST = 1e-250, 1e250
# Once every s u exceeds this, an iterate heading for beta = inf is in its asymptotic regime.
_ASYMPTOTIC = 1e8


def _spectrum(features, targets):
    """The non-zero eigenvalues of the Gram matrix and the targets' coordinates on its eigenvectors.

    With the compact SVD `F = U S V^T`, returns `sigma = s**2` and `x = U^T Y` for the
    `r` singular values that are non-zero to working precision, computed from the
    smaller of `F^T F` (D x D) and `F F^T` (n x n).
    """
    n, d = features.shape
    if n > d:
        sigma, v = np.linalg.eigh(features.T @ features)
    else:
        sigma, u = np.linalg.eigh(features @ features.T)
    keep = sigma > sigma.max() * max(n, d) * _EPS
    sigma = sigma[keep]
    if n > d:
        x = (v[:, keep].T @ (features.T @ targets)) / np.sqrt(sigma)[:, None]
    else:
        x = u[:, keep].T @ targets
    return sigma, x


def _log_evidence(sigma, x2, residual0, n, u, beta):
    """log p(y | F, alpha, beta) per target column, with `u = beta / alpha`.

    `D/2 log alpha - 1/2 log det(alpha I + beta F^T F) = -1/2 sum log(1 + s u)`, and
    `||F m - y||^2 = sum x^2 / (1 + s u)^2 + ||y - U U^T y||^2`.
    """
    scaled = sigma[:, None] * u[None, :] + 1.0
    residual = (x2 / scaled**2).sum(axis=0) + residual0
    alpha_m2 = beta * (sigma[:, None] * x2 * u[None, :] / scaled**2).sum(axis=0)  # alpha m^T m
    return n / 2 * np.log(beta / (2 * np.pi)) - beta / 2 * residual - alpha_m2 / 2 - np.log(scaled).sum(axis=0) / 2


def _noise_free_limit(sigma, x2, n):
    """The fixed point's limit when it heads for `beta = inf`, and whether it heads there once `u` is large.

    With `r = n` non-zero eigenvalues (the features interpolate any target: `n <= D`),
    the evidence at `beta = inf` is `log N(y; 0, F F^T / alpha)`, best at
    `alpha = n / sum x^2 / s`. For large `u` the update is `u <- kappa u` with
    `kappa = (sum 1 / s) (sum x^2 / s) / (n sum x^2 / s^2)`: the iteration runs off to
    `beta = inf` when `kappa >= 1`.
    """
    inverse = 1.0 / sigma[:, None]
    weighted = (x2 * inverse).sum(axis=0)
    alpha = n / np.maximum(weighted, _TINY)
    limit = n / 2 * np.log(alpha / (2 * np.pi)) + np.log(inverse).sum() / 2 - n / 2
    kappa = inverse.sum() * weighted / np.maximum(n * (x2 * inverse**2).sum(axis=0), _TINY)
    return limit, kappa >= 1.0


def _fixed_point(sigma, x2, residual0, n):
    """The limit of You et al.'s fixed-point iteration from alpha = beta = 1, per target column.

    Parametrised by `u = beta / alpha` (`u = 0` is `alpha = inf`, all weights zero) so
    that every term stays finite while alpha grows without bound:
    `gamma = sum s u / (1 + s u)`, `m^T m = u^2 sum s x^2 / (1 + s u)^2`, and the update
    `u <- beta_new m^T m / gamma` is computed with the common factor `u` taken out.
    A column that runs off to `beta = inf` gets its limit there in closed form.
    """
    u = np.ones(x2.shape[1])
    beta = np.ones(x2.shape[1])
    previous = None
    noise_free = np.zeros(x2.shape[1], dtype=bool)
    limit, runs_off = _noise_free_limit(sigma, x2, n) if len(sigma) == n else (None, noise_free)
    for _ in range(MAX_ITERATIONS):
        scaled = sigma[:, None] * u[None, :] + 1.0
        gamma = (sigma[:, None] * u[None, :] / scaled).sum(axis=0)
        residual = (x2 / scaled**2).sum(axis=0) + residual0
        new_beta = np.clip((n - gamma) / np.maximum(residual, _TINY), _LOWEST, _HIGHEST)
        ratio = (sigma[:, None] * x2 / scaled**2).sum(axis=0) / (sigma[:, None] / scaled).sum(axis=0)
        new_u = np.clip(new_beta * u * ratio, _LOWEST, _HIGHEST)
        evidence = _log_evidence(sigma, x2, residual0, n, new_u, new_beta)
        settled = np.maximum(np.abs(np.log(new_beta / beta)), np.abs(np.log(new_u / u))) < TOLERANCE
        if previous is not None:
            settled |= np.abs(evidence - previous) <= TOLERANCE * np.maximum(1.0, np.abs(evidence))
        noise_free |= runs_off & (sigma.min() * new_u > _ASYMPTOTIC)
        u, beta, previous = new_u, new_beta, evidence
        if np.all(settled | noise_free):
            break
    return np.where(noise_free, limit, evidence) if limit is not None else evidence


def log_me(features, labels):
    """LogME: how well fixed features fit the labels, as a linear model's log evidence per example.

    For each class `c`, the one-hot target `y_c = (labels == c)` is modelled by Bayesian
    linear regression on the features, `y_c ~ N(F w, 1 / beta)` with prior
    `w ~ N(0, I / alpha)`. The evidence `p(y_c | F, alpha, beta)` is maximised over
    `alpha, beta` by the fixed-point iteration of You et al. (Algorithm 1):
    `gamma = sum_i beta s_i / (alpha + beta s_i)`, `alpha <- gamma / m^T m`,
    `beta <- (n - gamma) / ||F m - y||^2`, with `m = beta (alpha I + beta F^T F)^-1 F^T y`
    evaluated through the eigendecomposition of `F^T F` (or of `F F^T` when there are
    fewer examples than features: the compact SVD, so `n < D` costs `O(n^2 D)`). The
    iteration runs to convergence (relative change below `TOLERANCE`), with no
    smoothing constant added. When the iteration runs off to the boundary (`alpha -> inf`:
    the features explain nothing; `beta -> inf`: with `n <= D` the features can
    interpolate the target), the score is the evidence's limit there. The score is the
    log evidence divided by `n`, averaged over the classes:

    `L = n/2 log beta + D/2 log alpha - n/2 log 2 pi - beta/2 ||F m - y||^2
    - alpha/2 m^T m - 1/2 log det(alpha I + beta F^T F)`.

    Higher is better; scores compare candidate features for one target dataset (the
    same examples and labels). The features are used as given (no centring, no bias).

    Args:
        features: `(num_examples, num_features)` array, e.g. pooled backbone outputs.
        labels: `(num_examples,)` integer class ids in `[0, K)`, every class present, K >= 2.

    Returns:
        The LogME score, a Python float.

    Raises:
        ValueError: if `features` is not a finite non-empty 2-D array or is all zeros,
            `labels` is not 1-D non-negative integers, their lengths disagree, there is
            one class only, fewer examples than classes, or a class without examples.

    Reference:
        You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for
        Transfer Learning", ICML 2021. https://arxiv.org/abs/2102.11005

    Example:

    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat([0, 1], 20)
    >>> separable = np.c_[labels + 0.1 * rng.normal(size=40), rng.normal(size=40)]
    >>> noise = rng.normal(size=(40, 2))
    >>> log_me = keras_transfer.ops.log_me
    >>> log_me(separable, labels) > log_me(noise, labels)
    True
    """
    features = inputs.check_matrix(features, "features", "features")
    labels, num_classes = inputs.check_target_labels(labels, len(features))
    if not np.any(features):
        raise ValueError(
            "`features` must not be all zeros (a zero feature map explains no target). Received: features of "
            f"shape {features.shape} with every entry 0. Check the feature extractor (a dead ReLU layer?)."
        )
    n = len(features)
    targets = np.eye(num_classes)[labels]
    sigma, x = _spectrum(features, targets)
    x2 = x**2
    y2 = targets.sum(axis=0)  # ||y||^2 of a one-hot column
    if len(sigma) == n:
        residual0 = np.zeros(num_classes)  # the features span every direction: y - U U^T y = 0
    else:
        # ||y - U U^T y||^2 >= the round-off of this difference: a noise variance below it is not resolved.
        residual0 = np.maximum(y2 - x2.sum(axis=0), n * _EPS * y2)
    evidence = _fixed_point(sigma, x2, residual0, n)
    return float(np.mean(evidence / n))
