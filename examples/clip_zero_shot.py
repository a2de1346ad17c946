# %% [markdown]
# # CLIP on embedded data: digits with captions -> zero-shot classifier -> WiSE-FT
#
# Trains CLIP (a small CNN image tower and a one-block text transformer) on digit images paired
# with template captions, builds a zero-shot classifier from held-out prompt templates (ensembled),
# fine-tunes a copy on a few labels per class, mixes the two in weight space (WiSE-FT) for several
# alphas, saves the classifier to `.keras` and exports a SavedModel with a float endpoint and an
# encoded-image-bytes endpoint.
#
# Run it as a script (`python examples/clip_zero_shot.py --help` lists the options) or open it as a
# notebook (Jupytext "percent" cells: Jupyter, VS Code, or Kaggle after `jupytext --to ipynb`).
# Everything is offline: images and captions are embedded in `keras_transfer`.

# %%
import argparse
import os
import sys

import keras
import numpy as np

import keras_transfer as kt
from keras_transfer.layers import TextTransformerEncoder
from keras_transfer.layers import word_tokenizer
from keras_transfer.models import CLIP
from keras_transfer.recipes import build_zero_shot_classifier
from keras_transfer.recipes import export_zero_shot_classifier
from keras_transfer.recipes import wise_ft

# %% [markdown]
# ## Settings
#
# From the command line when run as a script; in a notebook, edit the defaults here.
# `KERAS_TRANSFER_QUICK=1` in the environment shrinks the training to a few seconds (what CI runs).

# %%
QUICK = os.environ.get("KERAS_TRANSFER_QUICK", "0") not in ("", "0")
parser = argparse.ArgumentParser(description="CLIP on digits: zero-shot classifier, WiSE-FT, export.")
parser.add_argument("--epochs", type=int, default=2 if QUICK else 25, help="CLIP training epochs.")
parser.add_argument("--labels", type=int, default=5, help="Labels per class for fine-tuning.")
parser.add_argument("--fine-tune-epochs", type=int, default=2 if QUICK else 20)
parser.add_argument("--output", default="clip_output")
parser.add_argument("--seed", type=int, default=0)
# A notebook kernel's sys.argv holds its own arguments (`-f kernel.json`): keep the defaults there.
# (`%run examples/<name>.py --seed 1` in a notebook passes its arguments as on the command line.)
NOTEBOOK = "ipykernel" in sys.modules and "-f" in sys.argv[1:]
args = parser.parse_args([] if NOTEBOOK else None)

# %% [markdown]
# ## Train CLIP
#
# Each training image is paired with a caption from the training templates ("a photo of the
# number seven", ...). The image tower is a small CNN, the text tower one transformer block over
# word ids; `CLIP` projects both into one space and trains them with the symmetric contrastive
# loss; the logit scale (temperature) is learned.

# %%
keras.utils.set_random_seed(args.seed)
(x, captions, y), (x_test, _, y_test) = kt.datasets.load_digit_captions(image_size=8, seed=args.seed)
x, x_test = x.astype("float32"), x_test.astype("float32")
tokenizer = word_tokenizer(list(captions), sequence_length=10)
image_encoder = keras.Sequential(
    [  # a small CNN: [0, 255] pixels -> features
        keras.Input((8, 8, 1)),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(64, activation="relu"),
    ],
    name="image_encoder",
)
text_encoder = TextTransformerEncoder(  # one transformer block over word ids
    tokenizer.vocabulary_size(), 10, embedding_dim=32, num_layers=1, num_heads=2, dropout=0.1, name="text_encoder"
)
clip = CLIP(image_encoder, text_encoder, projection_dim=32)
clip.compile(optimizer=keras.optimizers.Adam(1e-3))
clip.fit({"images": x, "token_ids": tokenizer(list(captions)).numpy()}, batch_size=64, epochs=args.epochs, verbose=0)
print(f"CLIP trained, logit scale {clip.get_logit_scale():.1f}")

# %% [markdown]
# ## Zero-shot classifier
#
# Each class name is put into every held-out template (never seen in training), the text tower
# embeds the prompts, and their mean per class becomes the weights of a linear head on the image
# tower: a plain `keras.Model` that classifies without any labelled image.


# %%
def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0).argmax(axis=1) == y))


zero_shot = build_zero_shot_classifier(clip, kt.datasets.digit_class_names(), kt.datasets.HELDOUT_TEMPLATES, tokenizer)
print(f"zero-shot accuracy (held-out prompts, ensembled): {accuracy(zero_shot, x_test, y_test):.3f}")

# %% [markdown]
# ## WiSE-FT
#
# A copy of the zero-shot classifier (its head starts at the zero-shot head) is fine-tuned on a
# few labels per class; then zero-shot and fine-tuned weights are mixed,
# `wise_ft(zero_shot, fine_tuned, alpha)`: alpha 0 is zero-shot, 1 is fine-tuned.

# %%
rng = np.random.default_rng(args.seed)
few = np.concatenate([rng.choice(np.flatnonzero(y == c), args.labels, replace=False) for c in range(10)])
fine_tuned = keras.models.clone_model(zero_shot)
fine_tuned.set_weights(zero_shot.get_weights())
fine_tuned.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
fine_tuned.fit(x[few], y[few], batch_size=10, epochs=args.fine_tune_epochs, verbose=0)
for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
    mixed = wise_ft(zero_shot, fine_tuned, alpha=alpha)
    # One eager call per mixture: a `predict` per new model would retrace its function each time.
    scores = keras.ops.convert_to_numpy(mixed(x_test, training=False))
    print(f"WiSE-FT alpha={alpha:.2f}: test accuracy {np.mean(scores.argmax(axis=1) == y_test):.3f}")

# %% [markdown]
# ## Save and export
#
# The `.keras` file reloads without `custom_objects`; the SavedModel has `serve` (float pixels)
# and `serve_image_bytes` (encoded PNG/JPEG) endpoints. Both are replaced if they exist from a
# previous run of this example.

# %%
os.makedirs(args.output, exist_ok=True)
zero_shot.save(os.path.join(args.output, "zero_shot.keras"))
export_zero_shot_classifier(zero_shot, os.path.join(args.output, "zero_shot_savedmodel"))
print(f"Saved {args.output}/zero_shot.keras and the SavedModel (serve, serve_image_bytes).")
