"""MAML on sinusoid regression (Finn et al. 2017), then adapt, save and export one task's model.

    python examples/meta_learning_sinusoid.py [--iterations 10000] [--first-order] [--rates per_parameter]

Meta-trains a 1-40-40-1 MLP with `MetaModel.fit`, reports the query MSE on new tasks after
1 / 5 / 10 inner steps, and writes the adapted model of one task to `.keras` and a SavedModel.
"""

import argparse
import os
import tempfile

import keras
import numpy as np

import keras_transfer as kt


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=10000)
    parser.add_argument("--first-order", action="store_true")
    parser.add_argument("--rates", default=None, choices=[None, "per_parameter", "per_step"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=os.path.join(tempfile.gettempdir(), "maml_sinusoid"))
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)

    net = keras.Sequential([keras.Input((1,)), keras.layers.Dense(40, activation="relu"),
                            keras.layers.Dense(40, activation="relu"), keras.layers.Dense(1)])
    meta = kt.models.MetaModel(net, inner_steps=1, inner_learning_rate=0.01, first_order=args.first_order,
                               learn_inner_rates=args.rates, steps_per_batch=50)
    meta.compile(keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    tasks = kt.datasets.sinusoid_task_dataset(meta_batch_size=25, k_shot=10, k_query=10, seed=args.seed)
    meta.fit(tasks.batch(50, drop_remainder=True), steps_per_epoch=max(1, args.iterations // 50), verbose=2)

    (sx, sy, qx), qy = kt.datasets.sinusoid_tasks(200, k_shot=5, k_query=100, seed=args.seed + 1)
    for steps in (1, 5, 10):
        mse = np.mean((meta.adapt_and_predict(sx, sy, qx, steps=steps).numpy() - qy) ** 2)
        print(f"query MSE after {steps:2d} step(s) on K=5 points: {mse:.3f}")

    os.makedirs(args.output, exist_ok=True)
    meta.save(os.path.join(args.output, "meta_model.keras"))  # with the optimizer state
    adapted = meta.adapt(sx[0], sy[0], steps=10)               # a plain keras.Model
    adapted.save(os.path.join(args.output, "task0.keras"))
    adapted.export(os.path.join(args.output, "task0_savedmodel"), verbose=False)
    print(f"Saved the meta-model and task 0's adapted model under {args.output}")


if __name__ == "__main__":
    main()
