# %% [markdown]
# # Fine-tuning on embedded data: digits 0-4 -> digits 5-9 with 3 labels per class
#
# A backbone is trained on the source task (digits 0-4), then transferred to the target task
# (digits 5-9, only 3 labelled images per class) in four ways: a linear probe, surgical fine-tuning
# of the first or the last blocks, and LP-FT (linear probe, then fine-tune) with discriminative
# learning rates. The LP-FT model is saved to `.keras` and exported as a SavedModel.
#
# Run it as a script (`python examples/fine_tune_digits.py --help` lists the options) or open it as a
# notebook (Jupytext "percent" cells: Jupyter, VS Code, or Kaggle after `jupytext --to ipynb`).
# Everything is offline: the data is embedded and the backbone starts from random weights.

# %%
import argparse
import os
import sys

import keras

import keras_transfer as kt

# %% [markdown]
# ## Settings
#
# From the command line when run as a script; in a notebook, edit the defaults here. `--backbone`
# takes any name of `kt.recipes.available_backbones()`. `KERAS_TRANSFER_QUICK=1` in the environment
# shrinks the training to a few seconds (what CI runs).

# %%
QUICK = os.environ.get("KERAS_TRANSFER_QUICK", "0") not in ("", "0")
parser = argparse.ArgumentParser(description="Fine-tune from digits 0-4 to digits 5-9 with 3 labels per class.")
parser.add_argument("--backbone", default="simple_cnn")
parser.add_argument("--image-size", type=int, default=32)
parser.add_argument("--labels", type=int, default=3, help="Labelled target images per class.")
parser.add_argument("--epochs", type=int, default=1 if QUICK else 20)
parser.add_argument(
    "--output", default="fine_tuned_digits", help="Writes OUTPUT.keras and the SavedModel folder OUTPUT_savedmodel."
)
parser.add_argument("--seed", type=int, default=0)
# A notebook kernel's sys.argv holds its own arguments (`-f kernel.json`): keep the defaults there.
# (`%run examples/<name>.py --seed 1` in a notebook passes its arguments as on the command line.)
NOTEBOOK = "ipykernel" in sys.modules and "-f" in sys.argv[1:]
args = parser.parse_args([] if NOTEBOOK else None)

# %% [markdown]
# ## Data
#
# `digits_source_target` splits the embedded digits into the source task (all labels of 0-4) and
# the target task (a few labels of 5-9 for training, the rest for testing), resized to
# `image_size` pixels.

# %%
keras.utils.set_random_seed(args.seed)
split = kt.datasets.digits_source_target(image_size=args.image_size, labels_per_class=args.labels, seed=args.seed)

# %% [markdown]
# ## Pretrain on the source task
#
# `build_classifier` puts a new classification head on a registry backbone; the model is a plain
# `keras.Model`. Its blocks (the units that surgical fine-tuning picks from) are listed.

# %%
source = kt.recipes.build_classifier(args.backbone, 5, split.source_train[0].shape[1:])
kt.recipes.compile_for_fine_tuning(source, learning_rate=2e-3)
source.fit(*split.source_train, epochs=args.epochs, batch_size=32, verbose=2)
print("source accuracy", kt.recipes.evaluate_accuracy(source, *split.source_test))
print("blocks:", list(kt.recipes.backbone_blocks(kt.recipes.get_backbone(source))))

# %% [markdown]
# ## Transfer to the target task
#
# Each variant starts from a copy of the source model with a new 5-class head (`replace_head`):
#
# - **linear probe**: the backbone frozen, the head solved as the convex problem it is;
# - **LP-FT, first / last blocks**: probe, then fine-tune only those blocks (surgical fine-tuning);
# - **LP-FT, all blocks**: probe, then fine-tune everything, the backbone 0.3x slower than the head
#   and each block deeper down 0.8x slower again (layer-wise decay).

# %%
results = {}
probe = kt.recipes.replace_head(source, 5)
kt.recipes.freeze_backbone(probe)
kt.recipes.linear_probe(probe, *split.target_train)
results["linear probe"] = kt.recipes.evaluate_accuracy(probe, *split.target_test)
for blocks in ("first", "last"):
    model = kt.recipes.replace_head(source, 5)
    kt.recipes.fine_tune(
        model,
        *split.target_train,
        probe="convex",
        blocks=blocks,
        epochs=args.epochs,
        learning_rate=1e-3,
        batch_size=16,
        verbose=0,
    )
    results[f"LP-FT, {blocks} blocks only"] = kt.recipes.evaluate_accuracy(model, *split.target_test)
model = kt.recipes.replace_head(source, 5)
kt.recipes.fine_tune(
    model,
    *split.target_train,
    probe="convex",
    epochs=args.epochs,
    learning_rate=1e-3,
    backbone_multiplier=0.3,
    layer_decay=0.8,
    batch_size=16,
    verbose=0,
)
results["LP-FT, all blocks, layer-wise decay"] = kt.recipes.evaluate_accuracy(model, *split.target_test)

# %% [markdown]
# ## Results
#
# What trains in the last model, then the target-task test accuracy of each variant (chance is 0.2).

# %%
print(kt.recipes.trainable_report(model))
for name, accuracy in results.items():
    print(f"{name:40s} {accuracy:.3f}")

# %% [markdown]
# ## Save and export
#
# `.keras` reloads with `keras.models.load_model` (no `custom_objects` once `keras_transfer` is
# imported); the SavedModel serves with TF Serving. Both are replaced if they exist from a
# previous run of this example.

# %%
model.save(f"{args.output}.keras")
model.export(f"{args.output}_savedmodel", verbose=False)
print(f"Saved {args.output}.keras and {args.output}_savedmodel/")
