"""Curriculum (transfer scoring) vs random order vs anti-curriculum vs vanilla on digits 5-9.

Hacohen & Weinshall (ICML 2019) sort the training set by a pretrained "teacher" (transfer
scoring) and sample each mini-batch from the easiest `pacing(step)` examples. Here the teacher
is a simple_cnn pretrained on digits 0-4; a classifier fitted on its features scores the
target training set (digits 5-9, with symmetric label noise in one setting), and a small CNN
is trained from scratch on the target with

- curriculum: easiest (lowest transfer loss) first, fixed exponential pacing, class-balanced
  order (every prefix holds the classes in proportion: `balance_classes=True`);
- curriculum, unbalanced: the same with the plain sorted order (an easy class can fill the
  first prefixes alone);
- random: the same pacing over a random class-balanced order (the paper's "random curriculum");
- anti-curriculum: the same pacing, hardest first (class-balanced);
- vanilla: uniform batches from the whole set at every step.

Test accuracy is recorded every `--eval-every` steps; the table gives the median and range
(min-max) over seeds at a small step budget and at the end.

    python benchmarks/curriculum_digits.py            # 3 seeds, noise 0 and 0.2, 600 steps
    python benchmarks/curriculum_digits.py --quick    # CI: 1 seed, a few steps
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import time

import keras
import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes
from keras_transfer import schedules

METHODS = ("curriculum", "curriculum, unbalanced", "random", "anti-curriculum", "vanilla")


def noisy_labels(y, fraction, num_classes, seed):
    """`y` with `fraction` of the labels moved to another class (uniformly), and the flipped mask."""
    rng = np.random.default_rng(seed)
    flipped = rng.random(len(y)) < fraction
    shift = rng.integers(1, num_classes, size=len(y))
    return np.where(flipped, (y + shift) % num_classes, y), flipped


def load(image_size):
    (x, y), (x_test, y_test) = datasets.load_digits(image_size=image_size, channels=1)
    source, target, target_test = y < 5, y >= 5, y_test >= 5
    return (
        (x[source].astype("float32"), y[source]),
        (x[target].astype("float32"), y[target] - 5),
        (x_test[target_test].astype("float32"), y_test[target_test] - 5),
    )


class Evaluate(keras.callbacks.Callback):
    """Test accuracy at the end of every `fit` epoch (= every `eval_every` steps)."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y, self.curve = x, y, []

    def on_epoch_end(self, epoch, logs=None):
        self.curve.append(recipes.evaluate_accuracy(self.model, self.x, self.y))


def train_methods(train, test, scores, args, seed):
    """{method: accuracy curve} for one seed; every method starts from the same initial weights."""
    x, y = train
    keras.utils.set_random_seed(seed)
    model = recipes.build_classifier("simple_cnn", 5, x.shape[1:], dropout=0.0, widths=args.widths)
    recipes.compile_for_fine_tuning(model, learning_rate=args.lr)
    model.optimizer.build(model.trainable_variables)
    start_weights = model.get_weights()
    start_optimizer = [v.numpy() for v in model.optimizer.variables]
    pacing = schedules.FixedExponentialPacing(
        args.start, args.increase, step_length=args.step_length, total_steps=args.steps
    )
    orders = {
        "curriculum": (scores, pacing, True),
        "curriculum, unbalanced": (scores, pacing, False),
        "random": (np.random.default_rng(seed + 100).random(len(x)), pacing, True),
        "anti-curriculum": (-scores, pacing, True),
        "vanilla": (np.zeros(len(x)), schedules.StepPacing(1.0, step_length=1), False),
    }
    curves = {}
    for method, (difficulty, method_pacing, balance) in orders.items():
        model.set_weights(start_weights)  # the same network and a fresh optimizer state for every method
        for variable, value in zip(model.optimizer.variables, start_optimizer):
            variable.assign(value)
        dataset = datasets.curriculum_dataset(
            x, y, difficulty, method_pacing, args.batch_size, seed, steps=args.steps, balance_classes=balance
        )
        evaluate = Evaluate(*test)
        model.fit(
            dataset,
            epochs=args.steps // args.eval_every,
            steps_per_epoch=args.eval_every,
            callbacks=[evaluate],
            verbose=0,
            shuffle=False,
        )
        curves[method] = evaluate.curve
    return curves


def summary(values):
    return f"{np.median(values):.3f} [{np.min(values):.3f}-{np.max(values):.3f}]"


def run_setting(noise, data, args):
    (xs, ys), (xt, yt), test = data
    per_seed, score_quality = [], []
    for seed in range(args.seeds):
        teacher = _common.pretrain_source(xs, ys, 5, args.teacher_epochs, widths=args.widths, seed=seed)
        y_noisy, flipped = noisy_labels(yt, noise, 5, seed)
        scores = recipes.transfer_difficulty(teacher, xt, y_noisy, C=1.0, folds=args.folds, seed=seed)
        easiest = datasets.difficulty_order(scores, labels=y_noisy)[: int(args.start * len(scores))]
        score_quality.append(float(np.mean(flipped[easiest])) if noise else float("nan"))
        per_seed.append(train_methods((xt, y_noisy), test, scores, args, seed))
        print(f"noise {noise}, seed {seed}: " + ", ".join(f"{m} {c[-1]:.3f}" for m, c in per_seed[-1].items()))
    return per_seed, score_quality


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", default="0,0.2", help="label-noise fractions of the target (comma-separated)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--budget", type=int, default=100, help="the small step budget reported")
    parser.add_argument("--start", type=float, default=0.1, help="starting fraction of the pacing")
    parser.add_argument("--increase", type=float, default=2.0)
    parser.add_argument("--step-length", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--teacher-epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=None, help="cross-fitted transfer scores (default: in-sample)")
    parser.add_argument("--image-size", type=int, default=16)
    args = parser.parse_args(argv)
    args.widths = (8, 16, 32)
    if args.quick:
        args.seeds, args.noise, args.steps, args.eval_every, args.budget = 1, "0.2", 20, 10, 10
        args.step_length, args.teacher_epochs, args.image_size, args.widths = 3, 1, 8, (4, 8, 8)
    if args.steps % args.eval_every or args.budget % args.eval_every:
        raise ValueError(
            f"`--steps` and `--budget` must be multiples of `--eval-every`. Received: steps={args.steps}, "
            f"budget={args.budget}, eval_every={args.eval_every}"
        )
    data = load(args.image_size)
    start = time.time()
    results = {}
    for noise in [float(v) for v in args.noise.split(",")]:
        per_seed, quality = run_setting(noise, data, args)
        budget_index = args.budget // args.eval_every - 1
        results[noise] = {
            method: {
                "budget": [c[method][budget_index] for c in per_seed],
                "final": [c[method][-1] for c in per_seed],
                "mean_curve": [float(np.mean(c[method])) for c in per_seed],
                "curves": [c[method] for c in per_seed],
            }
            for method in METHODS
        }
        results[noise]["noisy_share_of_first_prefix"] = quality
    seconds = time.time() - start
    print(
        f"\nDigits 5-9 ({len(data[1][0])} training / {len(data[2][0])} test images, {args.image_size} px), "
        f"simple_cnn {args.widths} from scratch, Adam {args.lr:g}, batch {args.batch_size}, {args.steps} steps; "
        f"pacing FixedExponentialPacing({args.start}, {args.increase}, step_length={args.step_length}); "
        f"teacher: simple_cnn on digits 0-4, {args.teacher_epochs} epochs; {args.seeds} seeds, "
        f"median [min-max] test accuracy ({seconds:.0f} s)\n"
    )
    header = ["label noise", "method", f"at {args.budget} steps", f"at {args.steps} steps", "mean over the curve"]
    rows = []
    for noise, by_method in results.items():
        for method in METHODS:
            r = by_method[method]
            rows.append([noise, method, summary(r["budget"]), summary(r["final"]), summary(r["mean_curve"])])
    _common.print_table(header, rows)
    for noise, by_method in results.items():
        if noise:
            share = by_method["noisy_share_of_first_prefix"]
            print(
                f"\nnoise {noise}: share of mislabelled examples in the first prefix ({args.start:.0%} easiest, "
                "class-balanced): " + ", ".join(f"{v:.3f}" for v in share) + f" (overall {noise})"
            )
    return {"results": results, "seconds": seconds, "args": vars(args)}


if __name__ == "__main__":
    main(sys.argv[1:])
