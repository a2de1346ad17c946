"""Transferability scores from a source model's outputs or features: LEEP, NCE and H-score.

Each score is computed once on the target training set, without fine-tuning; higher
predicts better transfer. `keras_transfer.ops.log_me` (in `logme.py`) is the fourth.
"""

import numpy as np

from keras_transfer.ops import transferability_inputs as inputs

# H-score's pseudo-inverse treats covariance eigenvalues below this fraction of the
# largest as zero: directions that float32 features do not resolve (linear dependence,
# units that are constant) are left out instead of inverted into noise.
H_SCORE_RCOND = 1e-10


def leep(source_probabilities, labels):
    """LEEP: the log expected empirical prediction of a source classifier on the target labels.

    With `theta(x_i)` the source model's class probabilities on the target examples,
    the empirical joint of target label `y` and source class `z` is
    `P(y, z) = 1/n sum_{i: y_i = y} theta(x_i)_z`, the conditional
    `P(y | z) = P(y, z) / sum_y' P(y', z)`, and LEEP is the mean log-likelihood of the
    "expected empirical predictor" `sum_z P(y_i | z) theta(x_i)_z`. It lies in
    `(-inf, 0]`; higher is better.

    Args:
        source_probabilities: `(num_examples, num_source_classes)` probabilities of the
            source model (softmax outputs) on the target examples; each row sums to 1.
        labels: `(num_examples,)` target class ids in `[0, K)`, every class present, K >= 2.

    Returns:
        The LEEP score, a Python float.

    Raises:
        ValueError: if `source_probabilities` is not a finite non-empty 2-D array of
            probabilities whose rows sum to 1, `labels` is not 1-D non-negative
            integers, their lengths disagree, there is one class only, fewer examples
            than classes, or a class without examples.

    Reference:
        Nguyen, Hassner, Seeger & Archambeau, "LEEP: A New Measure to Evaluate
        Transferability of Learned Representations", ICML 2020.
        https://arxiv.org/abs/2002.12462

    Example:

    >>> probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7]])
    >>> labels = np.array([0, 0, 1, 1])
    >>> round(keras_transfer.ops.leep(probabilities, labels), 4)
    -0.3426
    """
    theta = inputs.check_probabilities(source_probabilities)
    labels, num_classes = inputs.check_target_labels(labels, len(theta), other="source_probabilities")
    joint = np.zeros((num_classes, theta.shape[1]))
    np.add.at(joint, labels, theta)
    joint /= len(theta)
    marginal = joint.sum(axis=0)
    # A source class with no probability mass on any example has no conditional; it
    # contributes theta_z = 0 to every sum, so any value will do.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("iz,iz->i", theta, conditional[labels])
    return float(np.mean(np.log(expected)))


def nce(source_labels, target_labels):
    """NCE: the negative conditional entropy `-H(Y | Z)` of target labels given source labels.

    `Z` are the labels a source model gives the target examples (e.g. the argmax of
    its outputs), `Y` the target labels. With the empirical joint
    `P(y, z) = #{i: y_i = y, z_i = z} / n`,
    `NCE = sum_{y, z} P(y, z) log(P(y, z) / P(z))`. It lies in `[-log K, 0]`; 0 means
    the source labels determine the target labels. Higher is better.

    Args:
        source_labels: `(num_examples,)` non-negative integer source class ids.
        target_labels: `(num_examples,)` target class ids in `[0, K)`, every class
            present, K >= 2.

    Returns:
        The NCE score, a Python float.

    Raises:
        ValueError: if either label array is not 1-D non-negative integers or is empty,
            their lengths disagree, or `target_labels` has one class only, fewer
            examples than classes, or a class without examples.

    Reference:
        Tran, Nguyen & Hassner, "Transferability and Hardness of Supervised
        Classification Tasks", ICCV 2019. https://arxiv.org/abs/1908.08142

    Example:

    >>> source = np.array([0, 0, 1, 1])
    >>> target = np.array([0, 1, 1, 1])
    >>> round(keras_transfer.ops.nce(source, target), 4)  # -(1/2) log 2
    -0.3466
    """
    source = inputs.check_integer_ids(source_labels, "source_labels")
    target, num_classes = inputs.check_target_labels(
        target_labels, len(source), name="target_labels", other="source_labels"
    )
    _, source = np.unique(source, return_inverse=True)
    counts = np.zeros((num_classes, int(source.max()) + 1))
    np.add.at(counts, (target, source), 1.0)
    joint = counts / len(target)
    marginal = joint.sum(axis=0, keepdims=True)
    present = joint > 0
    return float(np.sum(joint[present] * np.log((joint / marginal)[present])))


def h_score(features, labels, rcond=H_SCORE_RCOND):
    """H-score: `tr(cov(f)^+ cov(E[f | y]))`, the features' between-class over total covariance.

    `cov(f)` is the covariance of the features over the examples and `cov(E[f | y])`
    the covariance of each example's class mean (the between-class covariance, classes
    weighted by their frequency); both divide by `n`. `cov(f)^+` is the Moore-Penrose
    pseudo-inverse with eigenvalues below `rcond` times the largest treated as zero:
    the only regularisation. The score lies in `[0, min(K - 1, D)]`; higher is better.
    With many features per example the covariance is poorly estimated, and with
    `n <= D` (fewer examples than features) the score saturates at `K - 1` for any
    features: score on more examples than features, or prefer `log_me`.

    Args:
        features: `(num_examples, num_features)` array, e.g. pooled backbone outputs.
        labels: `(num_examples,)` integer class ids in `[0, K)`, every class present, K >= 2.
        rcond: relative cut-off of the pseudo-inverse, a number in `[0, 1)`.

    Returns:
        The H-score, a Python float.

    Raises:
        ValueError: if `features` is not a finite non-empty 2-D array, `labels` is not
            1-D non-negative integers, their lengths disagree, there is one class only,
            fewer examples than classes, a class without examples, or `rcond` is not in
            `[0, 1)`.

    Reference:
        Bao, Li, Huang, Zheng, Wornell & Zhang, "An Information-Theoretic Approach to
        Transferability in Task Transfer Learning", ICIP 2019.

    Example:

    >>> features = np.array([[0.0], [2.0], [1.0], [3.0]])
    >>> labels = np.array([0, 0, 1, 1])
    >>> round(keras_transfer.ops.h_score(features, labels), 4)  # between 0.25 / total 1.25
    0.2
    """
    features = inputs.check_matrix(features, "features", "features")
    labels, num_classes = inputs.check_target_labels(labels, len(features))
    if isinstance(rcond, bool) or not isinstance(rcond, (int, float, np.floating)) or not 0 <= rcond < 1:
        raise ValueError(
            f"`rcond` must be a number in [0, 1), the pseudo-inverse's relative cut-off. Received: rcond={rcond!r}"
        )
    n = len(features)
    centred = features - features.mean(axis=0)
    covariance = centred.T @ centred / n
    counts = np.bincount(labels, minlength=num_classes).astype("float64")
    class_means = np.zeros((num_classes, features.shape[1]))
    np.add.at(class_means, labels, centred)
    class_means /= counts[:, None]
    between = (class_means * counts[:, None]).T @ class_means / n
    inverse = np.linalg.pinv(covariance, rcond=float(rcond), hermitian=True)
    return float(np.sum(inverse * between))
