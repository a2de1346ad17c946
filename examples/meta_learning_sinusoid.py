# %% [markdown]
# # MAML on sinusoid regression (Finn et al. 2017)
#
# Meta-trains a 1-40-40-1 MLP with `MetaModel.fit` on random sinusoid tasks, reports the query MSE
# on new tasks after 1 / 5 / 10 inner steps from K=5 points, and writes the adapted model of one
# task to `.keras` and a SavedModel.
#
# Run it as a script (`python examples/meta_learning_sinusoid.py --help` lists the options) or open it
# as a notebook (Jupytext "percent" cells: Jupyter, VS Code, or Kaggle after `jupytext --to ipynb`).
# Everything is offline: the tasks are generated.

# %%
import argparse
import os
import sys
import tempfile

import keras
import numpy as np

import keras_transfer as kt

# %% [markdown]
# ## Settings
#
# From the command line when run as a script; in a notebook, edit the defaults here.
# `--first-order` drops the second-order terms (FOMAML); `--rates` learns the inner learning rates
# (Meta-SGD per parameter, or one per step). `KERAS_TRANSFER_QUICK=1` in the environment shrinks the
# meta-training to a few seconds (what CI runs).

# %%
QUICK = os.environ.get("KERAS_TRANSFER_QUICK", "0") not in ("", "0")
parser = argparse.ArgumentParser(description="MAML on sinusoid regression; adapt, save and export one task.")
parser.add_argument("--iterations", type=int, default=100 if QUICK else 10000, help="Meta-steps.")
parser.add_argument("--first-order", action="store_true")
parser.add_argument("--rates", default=None, choices=[None, "per_parameter", "per_step"])
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--output", default=os.path.join(tempfile.gettempdir(), "maml_sinusoid"))
# A notebook kernel's sys.argv holds its own arguments (`-f kernel.json`): keep the defaults there.
# (`%run examples/<name>.py --seed 1` in a notebook passes its arguments as on the command line.)
NOTEBOOK = "ipykernel" in sys.modules and "-f" in sys.argv[1:]
args = parser.parse_args([] if NOTEBOOK else None)

# %% [markdown]
# ## The meta-model
#
# `MetaModel` wraps any Keras model: one inner SGD step (learning rate 0.01) per task on its support
# points, the meta-loss on its query points. `steps_per_batch=50` runs 50 meta-steps inside each
# call of the compiled train function (fewer Python round trips).

# %%
keras.utils.set_random_seed(args.seed)
net = keras.Sequential(
    [
        keras.Input((1,)),
        keras.layers.Dense(40, activation="relu"),
        keras.layers.Dense(40, activation="relu"),
        keras.layers.Dense(1),
    ]
)
meta = kt.models.MetaModel(
    net,
    inner_steps=1,
    inner_learning_rate=0.01,
    first_order=args.first_order,
    learn_inner_rates=args.rates,
    steps_per_batch=50,
)
meta.compile(keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])

# %% [markdown]
# ## Meta-train
#
# Each element of the task dataset is a meta-batch of 25 tasks (10 support and 10 query points
# each); batched by 50 for `steps_per_batch`. The dataset draws new random tasks itself, hence
# `shuffle=False` (Keras cannot shuffle a `tf.data.Dataset` and warns if asked to).

# %%
tasks = kt.datasets.sinusoid_task_dataset(meta_batch_size=25, k_shot=10, k_query=10, seed=args.seed)
meta.fit(tasks.batch(50, drop_remainder=True), steps_per_epoch=max(1, args.iterations // 50), shuffle=False, verbose=2)

# %% [markdown]
# ## Adapt to new tasks
#
# 200 unseen tasks, 5 support points each: the query MSE after 1, 5 and 10 inner steps.

# %%
(sx, sy, qx), qy = kt.datasets.sinusoid_tasks(200, k_shot=5, k_query=100, seed=args.seed + 1)
for steps in (1, 5, 10):
    mse = np.mean((meta.adapt_and_predict(sx, sy, qx, steps=steps).numpy() - qy) ** 2)
    print(f"query MSE after {steps:2d} step(s) on K=5 points: {mse:.3f}")

# %% [markdown]
# ## Save and export
#
# The meta-model saves with its optimizer state (to resume meta-training); `adapt` returns a plain
# `keras.Model` for one task, which saves and exports like any other.

# %%
os.makedirs(args.output, exist_ok=True)
meta.save(os.path.join(args.output, "meta_model.keras"))  # with the optimizer state
adapted = meta.adapt(sx[0], sy[0], steps=10)  # a plain keras.Model
adapted.save(os.path.join(args.output, "task0.keras"))
adapted.export(os.path.join(args.output, "task0_savedmodel"), verbose=False)
print(f"Saved the meta-model and task 0's adapted model under {args.output}")
