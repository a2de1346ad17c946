"""NT-Xent: keras_transfer vs a NumPy implementation of the paper's formula vs a 20-line PyTorch
version, on identical inputs (max |difference|, tolerance 1e-5), plus per-call time vs PyTorch.

    python benchmarks/ssl_nt_xent.py [--quick]

PyTorch is an optional peer (`pip install torch==2.13.0`): skipped with a printed reason if missing.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import _common  # noqa: E402
from benchmarks._common import print_table  # noqa: E402
from keras_transfer.losses import nt_xent  # noqa: E402


def numpy_nt_xent(z1, z2, temperature):
    """Chen et al. (2020), Algorithm 1, written out: interleaved pairs, l(i, j) summed over pairs."""
    z = np.empty((2 * len(z1), z1.shape[1]), dtype="float64")
    z[0::2], z[1::2] = z1, z2
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    s = z @ z.T / temperature
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        j = i + 1 if i % 2 == 0 else i - 1
        others = np.concatenate([s[i, :i], s[i, i + 1 :]])
        m = others.max()
        total += -(s[i, j] - (m + np.log(np.sum(np.exp(others - m)))))
    return total / n2


def torch_nt_xent(z1, z2, temperature):
    """A 20-line PyTorch NT-Xent (the common SimCLR re-implementation pattern)."""
    import torch
    import torch.nn.functional as F

    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, targets)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    try:
        import torch

        # Multi-threaded torch timings were erratic (0.2-300 ms) on the shared 2-core machine.
        torch.set_num_threads(1)
    except ImportError:
        torch = None
        print("PyTorch peer skipped: `import torch` failed (pip install torch==2.13.0 to include it).")
    configs = [(8, 16, 0.1), (64, 32, 0.5)]
    if not args.quick:
        configs += [(256, 128, 0.07), (512, 128, 0.2)]
    repeats = 3 if args.quick else 20
    rows, results = [], {}
    for n, dim, t in configs:
        rng = np.random.default_rng(n)
        z1 = rng.normal(size=(n, dim)).astype("float32")
        z2 = (z1 + 0.5 * rng.normal(size=(n, dim))).astype("float32")
        ours = float(nt_xent(z1, z2, t))
        reference = numpy_nt_xent(z1, z2, t)
        ours_fn = tf.function(lambda a, b: nt_xent(a, b, t))
        a, b = tf.constant(z1), tf.constant(z2)
        ours_time, _ = _common.median_seconds(lambda: ours_fn(a, b).numpy(), repeats, warmup=1)
        row = {"numpy_diff": abs(ours - reference), "ours_ms": 1e3 * ours_time}
        if torch is not None:
            ta, tb = torch.from_numpy(z1), torch.from_numpy(z2)
            row["torch_diff"] = abs(ours - float(torch_nt_xent(ta, tb, t)))
            torch_time, _ = _common.median_seconds(lambda: float(torch_nt_xent(ta, tb, t)), repeats, warmup=1)
            row["torch_ms"] = 1e3 * torch_time
        results[(n, dim, t)] = row
        rows.append(
            [
                n,
                dim,
                t,
                f"{ours:.6f}",
                f"{row['numpy_diff']:.1e}",
                f"{row['torch_diff']:.1e}" if torch is not None else "skipped",
                f"{row['ours_ms']:.2f}",
                f"{row['torch_ms']:.2f}" if torch is not None else "skipped",
            ]
        )
    print_table(
        [
            "N pairs",
            "dim",
            "temperature",
            "NT-Xent (ours)",
            "|ours - NumPy|",
            "|ours - torch|",
            "ours ms (tf.function)",
            "torch ms (eager)",
        ],
        rows,
    )
    return results


if __name__ == "__main__":
    main()
