# %% [markdown]
# # Few-shot digits: ProtoNet, MAML and a black-box learner
#
# Three meta-learners on N-way K-shot episodes of the embedded digits: they are meta-trained on
# classes 0-4 and tested on the held-out classes 5-9 (600 episodes, with 95 % intervals). See
# BENCHMARKS.md: with only five training classes the meta-learners over-fit them.
#
# Run it as a script (`python examples/few_shot_digits.py --help` lists the options) or open it as a
# notebook (Jupytext "percent" cells: Jupyter, VS Code, or Kaggle after `jupytext --to ipynb`).
# Everything is offline: the data is embedded in `keras_transfer`.

# %%
import argparse
import os
import sys

import keras
import numpy as np

import keras_transfer as kt

# %% [markdown]
# ## Settings
#
# From the command line when run as a script; in a notebook, edit the defaults here.
# `KERAS_TRANSFER_QUICK=1` in the environment shrinks them to a few seconds of work (what CI runs).

# %%
QUICK = os.environ.get("KERAS_TRANSFER_QUICK", "0") not in ("", "0")
parser = argparse.ArgumentParser(description="ProtoNet, MAML and a black-box learner on few-shot digits.")
parser.add_argument("--n-way", type=int, default=5)
parser.add_argument("--k-shot", type=int, default=1)
parser.add_argument("--iterations", type=int, default=5 if QUICK else 500, help="Meta-training steps.")
parser.add_argument("--test-episodes", type=int, default=50 if QUICK else 600)
parser.add_argument("--seed", type=int, default=0)
# A notebook kernel's sys.argv holds its own arguments (`-f kernel.json`): keep the defaults there.
# (`%run examples/<name>.py --seed 1` in a notebook passes its arguments as on the command line.)
NOTEBOOK = "ipykernel" in sys.modules and "-f" in sys.argv[1:]
args = parser.parse_args([] if NOTEBOOK else None)

# %% [markdown]
# ## Episodes
#
# The digits (8x8 grayscale) scaled to [0, 1]. Training episodes come from classes 0-4 as a
# `tf.data` pipeline that samples (and shuffles) episodes itself, 16 per batch; test episodes are a
# fixed NumPy sample from classes 5-9, which the learners never see during meta-training.

# %%
keras.utils.set_random_seed(args.seed)
(x1, y1), (x2, y2) = kt.datasets.load_digits()
x = np.concatenate([x1, x2]).astype("float32") / 255.0
y = np.concatenate([y1, y2])
train = kt.datasets.episode_dataset(
    (x, y), args.n_way, args.k_shot, 5, episodes_per_batch=16, classes=[0, 1, 2, 3, 4], seed=args.seed
)
test_x, test_y = kt.datasets.sample_episodes(
    (x, y), args.test_episodes, args.n_way, args.k_shot, 5, classes=[5, 6, 7, 8, 9], seed=args.seed + 1
)


# %% [markdown]
# ## Learners
#
# The same small MLP body for each: ProtoNet embeds (32 features) and classifies by the nearest class
# prototype; MAML (`MetaModel`) adapts the whole network with 3 inner gradient steps per episode; the
# black-box learner reads the support set as context.


# %%
def body(outputs):
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(outputs),
        ]
    )


learners = {
    "ProtoNet": kt.models.ProtoNet(body(32), n_way=args.n_way),
    "MAML": kt.models.MetaModel(body(args.n_way), inner_steps=3, inner_learning_rate=0.3),
    "black-box": kt.models.BlackBoxLearner(args.n_way, num_classes=args.n_way, context_dim=64),
}

# %% [markdown]
# ## Meta-train, then test on the held-out classes
#
# Each learner is a `keras.Model`: `compile`, `fit` on the episode dataset, `predict` on the test
# episodes. `shuffle=False` because the dataset already samples its episodes at random (Keras cannot
# shuffle a `tf.data.Dataset` and warns if asked to).

# %%
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
for name, model in learners.items():
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(train, steps_per_epoch=args.iterations, shuffle=False, verbose=0)
    logits = model.predict(test_x, batch_size=100, verbose=0)
    per_episode = np.mean(np.argmax(logits, -1) == test_y, axis=1)
    half = 1.96 * per_episode.std(ddof=1) / np.sqrt(len(per_episode))
    print(
        f"{name:10s} {args.n_way}-way {args.k_shot}-shot accuracy on classes 5-9: {per_episode.mean():.3f} ± {half:.3f}"
    )
