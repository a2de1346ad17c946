"""Few-shot digits: MAML, first-order MAML, ProtoNets, the black-box learner vs fine-tuning.

Meta-train on digit classes 0-4, meta-test on the held-out classes 5-9 (sklearn's 8x8 digits,
train and test splits pooled). 5-way K-shot episodes with 5 queries per class; accuracy on
600 test episodes with a 95 % interval (1.96 standard errors over episodes). Every learner
uses the same MLP body (Flatten-64-64); "from scratch" trains that MLP on each support set
alone (SGD, all episodes batched), "pretrained + fine-tune" first trains it as a 5-class
classifier on classes 0-4, then fine-tunes all weights on each support set.

    python benchmarks/meta_digits_fewshot.py [--quick] [--k-shot 1]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer.demos.report import print_table  # noqa: E402
from keras_transfer.models import BlackBoxLearner  # noqa: E402
from keras_transfer.models import MetaModel  # noqa: E402
from keras_transfer.models import ProtoNet  # noqa: E402

N_WAY, QUERIES = 5, 5
TRAIN_CLASSES, TEST_CLASSES = [0, 1, 2, 3, 4], [5, 6, 7, 8, 9]


def body(outputs, name="head"):
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(outputs, name=name)])


def sce():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy(logits, y):
    per_episode = np.mean(np.argmax(logits, -1) == y, axis=1)
    return float(per_episode.mean()), float(1.96 * per_episode.std(ddof=1) / np.sqrt(len(per_episode)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--episodes", type=int, default=None)
    args = parser.parse_args(argv)
    iterations = args.iterations or (30 if args.quick else 3000)
    n_test = args.episodes or (40 if args.quick else 600)
    k = args.k_shot
    (x1, y1), (x2, y2) = datasets.load_digits()
    x = np.concatenate([x1, x2]).astype("float32") / 255.0
    y = np.concatenate([y1, y2])
    train = datasets.episode_dataset((x, y), N_WAY, k, QUERIES, episodes_per_batch=16,
                                     classes=TRAIN_CLASSES, seed=0)
    (tsx, tsy, tqx), tqy = datasets.sample_episodes((x, y), n_test, N_WAY, k, QUERIES,
                                                    classes=TEST_CLASSES, seed=1)
    results, rows = {}, []

    def record(name, logits, seconds):
        results[name] = accuracy(logits, tqy)
        rows.append([name, f"{results[name][0]:.3f} ± {results[name][1]:.3f}", f"{seconds:.0f}"])

    for name, kwargs in (("MAML (second order)", {}), ("first-order MAML", {"first_order": True})):
        keras.utils.set_random_seed(0)
        start = time.perf_counter()
        meta = MetaModel(body(N_WAY), inner_steps=3, inner_learning_rate=0.3, **kwargs)
        meta.compile(keras.optimizers.Adam(1e-3), sce(), metrics=["accuracy"])
        meta.fit(train, steps_per_epoch=iterations, epochs=1, verbose=0)
        record(name, meta.adapt_and_predict(tsx, tsy, tqx).numpy(), time.perf_counter() - start)

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    proto = ProtoNet(body(32, "embedding"), n_way=N_WAY)
    proto.compile(keras.optimizers.Adam(1e-3), sce(), metrics=["accuracy"])
    proto.fit(train, steps_per_epoch=iterations, epochs=1, verbose=0)
    record("ProtoNet", proto.predict((tsx, tsy, tqx), batch_size=100, verbose=0), time.perf_counter() - start)

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    encoder = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(64, activation="relu")])
    black_box = BlackBoxLearner(N_WAY, num_classes=N_WAY, feature_encoder=encoder, context_dim=64)
    black_box.compile(keras.optimizers.Adam(1e-3), sce(), metrics=["accuracy"])
    black_box.fit(train, steps_per_epoch=iterations, epochs=1, verbose=0)
    record("black-box (set encoder)", black_box.predict((tsx, tsy, tqx), batch_size=100, verbose=0),
           time.perf_counter() - start)

    # Baselines: SGD on each support set (all test episodes at once through the same inner loop).
    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    scratch = MetaModel(body(N_WAY), inner_learning_rate=0.3)
    scratch.compile(loss=sce())
    record("from scratch (50 SGD steps)", scratch.adapt_and_predict(tsx, tsy, tqx, steps=50).numpy(),
           time.perf_counter() - start)

    keras.utils.set_random_seed(0)
    start = time.perf_counter()
    pre = body(N_WAY)
    pre.compile(keras.optimizers.Adam(1e-3), sce())
    mask = np.isin(y, TRAIN_CLASSES)
    pre.fit(x[mask], y[mask], batch_size=32, epochs=3 if args.quick else 30, verbose=0)
    tuned = MetaModel(pre, inner_learning_rate=0.1)
    tuned.compile(loss=sce())
    record("pretrained (0-4) + fine-tune (20 steps)", tuned.adapt_and_predict(tsx, tsy, tqx, steps=20).numpy(),
           time.perf_counter() - start)

    print(f"\nDigits few-shot, {N_WAY}-way {k}-shot, meta-train classes 0-4 ({iterations} iterations x 16 "
          f"episodes), meta-test classes 5-9, accuracy over {n_test} episodes (95 % interval)")
    print_table(["method", "accuracy", "train s"], rows)
    return results


if __name__ == "__main__":
    main()
