"""Few-shot digits: ProtoNet, MAML and the black-box learner on N-way K-shot episodes.

    python examples/few_shot_digits.py [--n-way 5] [--k-shot 1] [--iterations 500]

Meta-trains on digit classes 0-4 and tests on the held-out classes 5-9 (600 episodes, 95 %
intervals). See BENCHMARKS.md: with only five training classes the meta-learners over-fit them.
"""

import argparse

import keras
import numpy as np

import keras_transfer as kt


def body(outputs):
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(64, activation="relu"), keras.layers.Dense(outputs)])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-way", type=int, default=5)
    parser.add_argument("--k-shot", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    (x1, y1), (x2, y2) = kt.datasets.load_digits()
    x = np.concatenate([x1, x2]).astype("float32") / 255.0
    y = np.concatenate([y1, y2])
    train = kt.datasets.episode_dataset((x, y), args.n_way, args.k_shot, 5, episodes_per_batch=16,
                                        classes=[0, 1, 2, 3, 4], seed=args.seed)
    test_x, test_y = kt.datasets.sample_episodes((x, y), 600, args.n_way, args.k_shot, 5,
                                                 classes=[5, 6, 7, 8, 9], seed=args.seed + 1)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    learners = {
        "ProtoNet": kt.models.ProtoNet(body(32), n_way=args.n_way),
        "MAML": kt.models.MetaModel(body(args.n_way), inner_steps=3, inner_learning_rate=0.3),
        "black-box": kt.models.BlackBoxLearner(args.n_way, num_classes=args.n_way, context_dim=64),
    }
    for name, model in learners.items():
        model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
        model.fit(train, steps_per_epoch=args.iterations, verbose=0)
        logits = model.predict(test_x, batch_size=100, verbose=0)
        per_episode = np.mean(np.argmax(logits, -1) == test_y, axis=1)
        half = 1.96 * per_episode.std(ddof=1) / np.sqrt(len(per_episode))
        print(f"{name:10s} {args.n_way}-way {args.k_shot}-shot accuracy on classes 5-9: "
              f"{per_episode.mean():.3f} ± {half:.3f}")


if __name__ == "__main__":
    main()
