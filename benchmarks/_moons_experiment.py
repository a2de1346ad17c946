"""The inter-twinning moons experiment of `domain_adaptation_moons.py` (Ganin et al., JMLR 2016, §5.1).

A network with one hidden layer of 15 sigmoid units, trained on labelled source moons;
the target moons are rotated by 35 degrees and unlabelled. `train_moons` trains DANN or
the source-only network; `plot_decision_boundaries` draws the paper's Figure 2 in spirit.
"""

import keras
import numpy as np

from keras_transfer.callbacks import GradientReversalSchedule
from keras_transfer.datasets import domain_pairs
from keras_transfer.models import DANN
from keras_transfer.models import SourceOnly

# The settings of the moons reproduction (benchmarks/NOTES.md): Ganin's shallow network
# (15 sigmoid units), a 64-unit domain MLP, domain loss weight 3, Ganin's λ_p schedule with
# γ = 3 (a slower ramp than the paper's γ = 10, which was less stable over seeds here).
MOONS_SETTINGS = {
    "hidden_units": 15,
    "domain_hidden_units": 64,
    "domain_loss_weight": 3.0,
    "learning_rate": 0.05,
    "momentum": 0.9,
    "batch_size": 64,
    "epochs": 400,
    "schedule": "ganin",
    "gamma": 3.0,
}


def moons_parts(seed, hidden_units=15, domain_hidden_units=64):
    """Feature extractor, label classifier and domain classifier of the moons experiment."""
    keras.utils.set_random_seed(seed)
    feature_extractor = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(hidden_units, activation="sigmoid")],
        name="feature_extractor",
    )
    label_classifier = keras.Sequential([keras.Input((hidden_units,)), keras.layers.Dense(2)], name="label_classifier")
    domain_classifier = keras.Sequential(
        [
            keras.Input((hidden_units,)),
            keras.layers.Dense(domain_hidden_units, activation="relu"),
            keras.layers.Dense(1),
        ],
        name="domain_classifier",
    )
    return feature_extractor, label_classifier, domain_classifier


def train_moons(data, seed=0, adapt=True, epochs=None, settings=None):
    """Trains DANN (`adapt=True`) or the source-only network on a `MoonsDomains`.

    Returns `(model, history_dict)`.
    """
    settings = dict(MOONS_SETTINGS, **(settings or {}))
    epochs = epochs or settings["epochs"]
    fe, lc, dc = moons_parts(seed, settings["hidden_units"], settings["domain_hidden_units"])
    pairs = domain_pairs(*data.source_train, data.target_train[0], batch_size=settings["batch_size"], seed=seed)
    optimizer = keras.optimizers.SGD(settings["learning_rate"], momentum=settings["momentum"])
    if adapt:
        model = DANN(fe, lc, dc, factor=0.0, domain_loss_weight=settings["domain_loss_weight"])
        callbacks = [GradientReversalSchedule(settings["schedule"], gamma=settings["gamma"])]
    else:
        model = SourceOnly(fe, lc)
        callbacks = []
    # XLA: a 2-15-2 network's step is dominated by op overhead, which XLA fuses away.
    model.compile(optimizer=optimizer, jit_compile=True)
    history = model.fit(pairs, epochs=epochs, verbose=0, callbacks=callbacks, shuffle=False)
    return model, history.history


def plot_decision_boundaries(data, models, path):
    """The paper's Figure 2 in spirit: label decision boundary of each model over both domains."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs, ys = data.source_train
    xt, yt = data.target_train
    both = np.concatenate([xs, xt])
    lo, hi = both.min(0) - 0.5, both.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype("float32")
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4.5))
    axes = np.atleast_1d(axes)
    for ax, (title, model) in zip(axes, models.items()):
        logits = model.predict(grid, batch_size=4096, verbose=0)
        z = (logits[:, 1] - logits[:, 0]).reshape(gx.shape)
        ax.contourf(gx, gy, z > 0, levels=[-0.5, 0.5, 1.5], colors=["#f4cccc", "#cfe2f3"], alpha=0.8)
        ax.contour(gx, gy, z, levels=[0.0], colors="k", linewidths=1.5)
        ax.scatter(xs[ys == 0, 0], xs[ys == 0, 1], c="#cc0000", marker="+", s=25, label="source, class 0")
        ax.scatter(xs[ys == 1, 0], xs[ys == 1, 1], c="#0b5394", marker="_", s=25, label="source, class 1")
        ax.scatter(xt[:, 0], xt[:, 1], c="k", marker=".", s=10, alpha=0.6, label="target (unlabelled)")
        accuracy = np.mean(model.predict(data.target_test[0], verbose=0).argmax(-1) == data.target_test[1])
        ax.set_title(f"{title}: target accuracy {accuracy:.3f}")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
