"""NumPy reference of DoRA's kernel (Liu et al. 2024, eq. 5), shared by the DoRA layer tests."""

import keras
import numpy as np


def numpy_dora_kernel(w0, a, b, m, alpha, rank, in_axes, out_axes):
    """`m * V / ||V||_c` with `V = W0 + (alpha / rank) A B`, `A B` mapping input to output axes."""
    w0 = np.asarray(w0, "float64")
    in_shape = [w0.shape[i] for i in in_axes]
    out_shape = [w0.shape[i] for i in out_axes]
    a2 = np.asarray(a, "float64").reshape(int(np.prod(in_shape)), rank)
    b2 = np.asarray(b, "float64").reshape(rank, int(np.prod(out_shape)))
    delta = (a2 @ b2).reshape(in_shape + out_shape)
    delta = np.transpose(delta, np.argsort(list(in_axes) + list(out_axes)))
    v = w0 + alpha / rank * delta
    norm = np.sqrt(np.sum(v**2, axis=tuple(in_axes), keepdims=True))
    return np.asarray(m, "float64").reshape(norm.shape) * v / norm


def randomize_dora(layer, seed=0):
    """Non-zero B and a magnitude away from ||W0||: the formula is then exercised in full."""
    rng = np.random.default_rng(seed)
    layer.dora_kernel_b.assign(rng.normal(size=layer.dora_kernel_b.shape) * 0.5)
    layer.dora_magnitude.assign(rng.uniform(0.5, 2.0, size=layer.dora_magnitude.shape))


def dora_values(layer):
    """(W0, A, B, m) of a DoRA layer as NumPy arrays."""
    base = [w for w in layer.weights if w.name == "kernel"][0]
    return [
        keras.ops.convert_to_numpy(v) for v in (base, layer.dora_kernel_a, layer.dora_kernel_b, layer.dora_magnitude)
    ]
