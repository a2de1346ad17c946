"""Knowledge distillation on digits 0-4 -> 5-9: a small MLP student, few labels, a fine-tuned CNN teacher.

The teacher is `simple_cnn` at 16 px (widths 16/32/64, 24,245 weights), trained on all
labelled digits 0-4, then fine-tuned (`recipes.fine_tune`, 30 epochs) on `--teacher-labels`
(default: `--labels`) labelled examples per class of the digits 5-9. The student is `Rescaling(1/255) ->
AveragePooling2D(2) -> Flatten -> Dense(32, relu) -> Dense(5)` on the same 16x16 images
(2,245 weights), trained three ways with Adam 1e-3 for `--epochs` epochs (batch 16 on
the labelled examples, 32 on all training images):

- labels only: sparse cross-entropy on the `--labels` labelled examples per class (the
  first of the teacher's, when it had more);
- distilled, labelled: `recipes.distill(teacher, student, temperature, alpha=0.5)` on the
  labelled examples (soft targets and labels);
- distilled, all images: `alpha=0`, `fit(x)` on every target training image (labelled and
  unlabelled, 672 or so), the teacher's soft targets alone.

Accuracy on the held-out digits 5-9 (about 225), mean ± std over seeds (split, labelled
examples and initialisations all follow the seed).

    python benchmarks/distillation_digits.py [--quick] [--seeds 3] [--labels 5] [--teacher-labels 30]
        [--temperature 4]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import collections

import keras
import numpy as np

from benchmarks import _common
from keras_transfer import datasets
from keras_transfer import recipes

METHODS = ("teacher", "labels only", "distilled, labelled", "distilled, all images")


def student_mlp(input_shape, num_classes, seed, hidden=32):
    """The student: 2x2 average pooling and a one-hidden-layer MLP, returning logits."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1.0 / 255.0),
            keras.layers.AveragePooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(num_classes),
        ],
        name="student",
    )


def train_student(method, teacher, split, epochs, temperature, seed):
    """A student trained by `method` (one of METHODS[1:]); returns it."""
    (x, y), unlabeled = split.target_train, split.target_unlabeled
    student = student_mlp(x.shape[1:], 5, seed)
    optimizer = keras.optimizers.Adam(1e-3)
    if method == "labels only":
        student.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        student.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
        return student
    alpha = 0.5 if method == "distilled, labelled" else 0.0
    distiller = recipes.distill(teacher, student, temperature=temperature, alpha=alpha)
    distiller.compile(optimizer=optimizer)
    if method == "distilled, labelled":
        distiller.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    else:
        everything = np.concatenate([x, unlabeled]).astype("float32")
        distiller.fit(everything, batch_size=32, epochs=epochs, verbose=0)
    return distiller.student


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one seed, one or two epochs, narrow teacher (CI)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--labels", type=int, default=5, help="labelled target examples per class")
    parser.add_argument("--teacher-labels", type=int, default=None, help="the teacher's (default: --labels)")
    parser.add_argument("--epochs", type=int, default=100, help="student epochs")
    parser.add_argument("--temperature", type=float, default=4.0)
    args = parser.parse_args(argv)
    seeds, source_epochs, target_epochs, widths = _common.run_settings(args, 15, 30)
    student_epochs = 2 if args.quick else args.epochs
    teacher_labels = args.teacher_labels or args.labels

    scores = collections.defaultdict(list)
    for seed in range(seeds):
        split = datasets.digits_source_target(image_size=16, labels_per_class=args.labels, seed=seed)
        # Same seed: the same test set, and the student's labelled examples among the teacher's.
        teacher_split = datasets.digits_source_target(image_size=16, labels_per_class=teacher_labels, seed=seed)
        source = _common.pretrain_source(*split.source_train, 5, source_epochs, widths, seed)
        teacher = _common.transfer(source, *teacher_split.target_train, 5, "fine-tune", target_epochs, seed)
        scores["teacher"].append(recipes.evaluate_accuracy(teacher, *split.target_test))
        for method in METHODS[1:]:
            student = train_student(method, teacher, split, student_epochs, args.temperature, seed)
            scores[method].append(recipes.evaluate_accuracy(student, *split.target_test))
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    sizes = f"teacher {teacher.count_params():,} weights, student {student.count_params():,}"
    print(
        f"\nDigits 5-9 test accuracy, {args.labels} labels/class (teacher {teacher_labels}), "
        f"T={args.temperature:g}, {sizes}, "
        f"{seeds} seed(s), mean ± std"
    )
    _common.print_table(list(METHODS), [[_common.mean_std(scores[m]) for m in METHODS]])
    return {method: float(np.mean(values)) for method, values in scores.items()}


if __name__ == "__main__":
    main()
