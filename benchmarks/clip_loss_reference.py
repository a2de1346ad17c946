"""`keras_transfer.losses.clip_loss` against independent references, in the same run.

References: the formula in float64 NumPy (Radford et al. 2021, Fig. 3), and
open_clip's `ClipLoss` computation in PyTorch (`(CE(s I T^T, i) + CE(s T I^T, i)) / 2`,
written out here so that open_clip itself need not be installed; PyTorch is
installed only for this benchmark and is skipped with a message when missing).
Values and gradients (w.r.t. both embeddings, via torch autograd) must agree to
1e-5; the median time of one loss + gradient evaluation is reported too.

    python benchmarks/clip_loss_reference.py [--quick]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse

import numpy as np
import tensorflow as tf

from benchmarks import _common
from benchmarks._common import print_table
from keras_transfer.losses import clip_loss

TOLERANCE = 1e-5


def numpy_loss(image, text, scale):
    image = image / np.linalg.norm(image, axis=1, keepdims=True)
    text = text / np.linalg.norm(text, axis=1, keepdims=True)
    logits = scale * image @ text.T

    def ce(rows):
        rows = rows - rows.max(axis=1, keepdims=True)
        return -np.mean(np.diag(rows) - np.log(np.exp(rows).sum(axis=1)))

    return 0.5 * (ce(logits) + ce(logits.T))


def torch_reference():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None

    def loss_and_grads(image, text, scale):
        i = torch.tensor(image, requires_grad=True)
        t = torch.tensor(text, requires_grad=True)
        fi, ft = F.normalize(i, dim=-1), F.normalize(t, dim=-1)
        # open_clip.loss.ClipLoss.forward with world_size=1:
        logits_per_image = scale * fi @ ft.T
        logits_per_text = scale * ft @ fi.T
        labels = torch.arange(fi.shape[0])
        loss = (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2
        loss.backward()
        return float(loss.detach()), i.grad.numpy(), t.grad.numpy()

    loss_and_grads.version = f"{torch.__version__}, {torch.get_num_threads()} threads"
    return loss_and_grads


@tf.function(reduce_retracing=True)
def keras_loss_and_grads(image, text, scale):
    with tf.GradientTape() as tape:
        tape.watch([image, text])
        loss = clip_loss(image, text, scale)
    gi, gt = tape.gradient(loss, [image, text])
    return loss, gi, gt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    sizes = [(8, 16, 14.3)] if args.quick else [(8, 16, 14.3), (64, 64, 1 / 0.07), (256, 128, 50.0), (1024, 512, 100.0)]
    repeats = 3 if args.quick else args.repeats
    torch_fn = torch_reference()
    if torch_fn is None:
        print(
            "PyTorch is not installed: skipping the torch (open_clip ClipLoss) reference. "
            "`pip install torch` to include it."
        )
    rng = np.random.default_rng(0)
    rows, results = [], []
    for n, d, scale in sizes:
        image = rng.normal(size=(n, d)).astype("float32")
        # Weakly correlated pairs: a loss far from 0 (easy pairs give CE ~ 0 at large scales).
        text = (0.15 * image + rng.normal(size=(n, d))).astype("float32")
        ti, tt = tf.constant(image), tf.constant(text)
        loss, gi, gt = keras_loss_and_grads(ti, tt, tf.constant(scale, tf.float32))
        loss, gi, gt = float(loss), gi.numpy(), gt.numpy()
        ref = numpy_loss(image.astype("float64"), text.astype("float64"), scale)
        entry = {"n": n, "d": d, "scale": scale, "loss": loss, "numpy_diff": abs(loss - ref)}
        t_keras, _ = _common.median_seconds(
            lambda: keras_loss_and_grads(ti, tt, tf.constant(scale, tf.float32)), repeats, warmup=1
        )
        entry["keras_ms"] = 1e3 * t_keras
        if torch_fn is not None:
            tl, tgi, tgt = torch_fn(image, text, scale)
            entry["torch_diff"] = abs(loss - tl)
            entry["torch_grad_diff"] = float(max(np.abs(gi - tgi).max(), np.abs(gt - tgt).max()))
            t_torch, _ = _common.median_seconds(lambda: torch_fn(image, text, scale), repeats, warmup=1)
            entry["torch_ms"] = 1e3 * t_torch
        results.append(entry)
        rows.append(
            [
                f"{n}x{d}",
                f"{scale:.1f}",
                f"{loss:.6f}",
                f"{entry['numpy_diff']:.1e}",
                f"{entry.get('torch_diff', float('nan')):.1e}",
                f"{entry.get('torch_grad_diff', float('nan')):.1e}",
                f"{entry['keras_ms']:.2f}",
                f"{entry.get('torch_ms', float('nan')):.2f}",
                f"{entry.get('torch_ms', float('nan')) / entry['keras_ms']:.2f}",
            ]
        )
    print(
        f"\nclip_loss vs references (loss + gradients, float32; torch "
        f"{getattr(torch_fn, 'version', 'missing')}), median of {repeats}"
    )
    print_table(
        [
            "batch x dim",
            "scale",
            "loss",
            "|Δ| NumPy f64",
            "|Δ| torch",
            "max |Δ grad| torch",
            "keras ms",
            "torch ms",
            "torch/keras time",
        ],
        rows,
    )
    worst = max(max(e["numpy_diff"], e.get("torch_diff", 0.0), e.get("torch_grad_diff", 0.0)) for e in results)
    print(f"Largest difference: {worst:.2e} (tolerance {TOLERANCE:.0e}): {'OK' if worst <= TOLERANCE else 'FAIL'}")
    return {"results": results, "worst": worst, "torch": torch_fn is not None}


if __name__ == "__main__":
    main()
