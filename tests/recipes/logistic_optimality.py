"""Checks that a logistic-regression head is at the optimum of scikit-learn's objective.

Two L-BFGS solutions of the same convex problem agree only to what their stopping rules
guarantee, and the digits beyond that change with scikit-learn / SciPy / BLAS releases
(a probability comparison at 1e-3 passed for years and failed on scikit-learn 1.9.1).
What a solver does guarantee is optimality: every gradient entry of the objective at
its solution is below its `tol`. So the head is checked on that, with the objective and
gradient written here in NumPy (float64), independently of scikit-learn's code:

- the objective is the one scikit-learn minimises: a scikit-learn reference solved 100x
  tighter than the probe has a gradient well below the probe's tolerance;
- the installed head's gradient is below `SOLVER_TOL` plus what rounding the head to
  float32 can add (the gradient's Lipschitz bound times the rounding);
- the objective values agree as far as those gradients allow (convexity:
  f(a) - f(b) <= max|grad f(a)| * ||a - b||_1).
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from keras_transfer.recipes.linear_probe import SOLVER_TOL

FLOAT32_ROUNDOFF = 2.0**-24  # relative rounding of a float64 value stored as float32
REFERENCE_TOL = SOLVER_TOL / 100
OBJECTIVE_ROUNDING = 1e-12  # float64 rounding of a mean of a few hundred O(1) terms, with margin


def objective(z, y, W, b, C):
    """scikit-learn's L2-penalised logistic objective and its gradient (flattened [W, b]), float64.

    `W` (K, D) with K >= 2: multinomial, mean cross-entropy of softmax(z W^T + b). `W` (1, D):
    binary, mean log-loss of sigmoid(z w + b). Penalty `||W||^2 / (2 C n)`, bias unpenalised.
    """
    z, W, b = (np.asarray(v, dtype="float64") for v in (z, W, b))
    n = len(z)
    logits = z @ W.T + b
    if W.shape[0] == 1:
        t = logits[:, 0]
        value = np.mean(np.logaddexp(0.0, t) - y * t)
        residual = (1.0 / (1.0 + np.exp(-t)) - y)[:, None]
    else:
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        value = -np.mean(log_p[np.arange(n), y])
        residual = np.exp(log_p) - np.eye(W.shape[0])[y]
    value += np.sum(W**2) / (2 * C * n)
    grad_W = residual.T @ z / n + W / (C * n)
    grad_b = residual.mean(axis=0)
    return value, np.concatenate([grad_W.ravel(), grad_b])


def gradient_lipschitz_bound(z, C):
    """Upper bound on the Lipschitz constant of the objective's gradient.

    Per example the loss Hessian is at most 1/2 x~ x~^T (softmax; 1/4 for the sigmoid),
    x~ = [z, 1]; the penalty adds 1 / (C n).
    """
    n = len(z)
    z1 = np.hstack([z, np.ones((n, 1))])
    return 0.5 * np.linalg.eigvalsh(z1.T @ z1 / n).max() + 1.0 / (C * n)


def head_parameters(kernel, bias, mean, scale):
    """The head `features @ kernel + bias` written on standardised features, and a bound on
    the norm of the error its float32 storage adds (per-entry relative rounding).

    Two classes: the probe installs sigmoid(t) as softmax([0, t]), so the binary parameters
    are the difference of the two columns.
    """
    kernel, bias = np.asarray(kernel, "float64"), np.asarray(bias, "float64")
    W = (kernel * scale[:, None]).T
    b = bias + mean @ kernel
    error_W = FLOAT32_ROUNDOFF * np.abs(W)
    error_b = FLOAT32_ROUNDOFF * (np.abs(bias) + np.abs(mean) @ np.abs(kernel))
    if kernel.shape[1] == 2:
        W, b = W[1:] - W[:1], b[1:] - b[:1]
        error_W, error_b = error_W[1:] + error_W[:1], error_b[1:] + error_b[:1]
    return W, b, float(np.linalg.norm(np.concatenate([error_W.ravel(), error_b])))


def assert_head_at_optimum(test, features, y, kernel, bias, C):
    """Asserts that (kernel, bias), fitted by the probe on `features`, solve scikit-learn's problem."""
    features = np.asarray(features, "float64")
    scaler = StandardScaler().fit(features)
    z = scaler.transform(features)
    W, b, rounding = head_parameters(kernel, bias, scaler.mean_, scaler.scale_)
    f_head, g_head = objective(z, y, W, b, C)

    reference = LogisticRegression(C=C, tol=REFERENCE_TOL, max_iter=20000).fit(z, y)
    f_ref, g_ref = objective(z, y, reference.coef_, reference.intercept_, C)
    # scikit-learn stops on its gtol (or a relative decrease of 64 eps); 10x margin for the latter.
    ref_bound = 10 * REFERENCE_TOL
    test.assertLessEqual(np.abs(g_ref).max(), ref_bound, "the NumPy objective is not the one scikit-learn minimises")

    head_bound = SOLVER_TOL + gradient_lipschitz_bound(z, C) * rounding
    test.assertLessEqual(
        np.abs(g_head).max(),
        head_bound,
        f"the head is not at the optimum (tolerance {SOLVER_TOL}, rounding {rounding:.2e})",
    )

    distance = np.abs(np.concatenate([(W - reference.coef_).ravel(), b - reference.intercept_])).sum()
    test.assertLessEqual(f_head - f_ref, head_bound * distance + OBJECTIVE_ROUNDING)
    test.assertLessEqual(f_ref - f_head, ref_bound * distance + OBJECTIVE_ROUNDING)
    return {
        "objective": f_head,
        "reference_objective": f_ref,
        "gradient": np.abs(g_head).max(),
        "gradient_bound": head_bound,
    }
