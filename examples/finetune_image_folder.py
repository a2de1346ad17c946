# %% [markdown]
# # Fine-tune a `keras.applications` backbone on your own folder of images
#
# `photos/` is `photos/<label>/*.jpg` or `photos/<split>/<label>/*.jpg` (splits `train`, `val` or
# `validation`, `test`):
#
#     python examples/finetune_image_folder.py photos/ --backbone efficientnet_b0 --weights imagenet
#
# Without a folder the example writes the embedded digits as PNG files to a temporary folder and
# uses that, so it runs offline as it is. The same job is `keras-transfer finetune --data photos/ ...`
# on the command line. Open it as a notebook too (Jupytext "percent" cells: Jupyter, VS Code, or
# Kaggle after `jupytext --to ipynb`); on Kaggle your data is under `/kaggle/input/<dataset>/`.

# %%
import argparse
import atexit
import os
import shutil
import sys
import tempfile

import numpy as np
from PIL import Image

import keras_transfer as kt
from keras_transfer.recipes.finetune_job import finetune_folder

# %% [markdown]
# ## Settings
#
# From the command line when run as a script; in a notebook, edit the defaults here (set `data` to
# your folder). `--weights imagenet` needs the weights file in the Keras cache or a download; the
# default (`None`) starts from random weights, with which a MobileNetV3 stays at chance (its
# BatchNorm runs in inference mode, so random features vanish): use `--weights imagenet` (or a
# weights file) on real photos, or `--backbone simple_cnn` to see the digits learnt.
#
# The model is saved to `--save` and exported to `--export`; an existing file or export there is
# kept, and the job stops before training, unless `--overwrite` is given (it replaces only a
# previous `.keras` file or a folder holding a previous export, never other files).
# `KERAS_TRANSFER_QUICK=1` in the environment shrinks the job to a few seconds (what CI runs): one
# epoch, 12 images per class, and the small `simple_cnn` backbone.

# %%
QUICK = os.environ.get("KERAS_TRANSFER_QUICK", "0") not in ("", "0")
parser = argparse.ArgumentParser(description="Fine-tune a keras.applications backbone on an image folder.")
parser.add_argument(
    "data",
    nargs="?",
    default=None,
    help="Image folder; omitted, the embedded digits are written to a temporary folder.",
)
parser.add_argument(
    "--backbone",
    default="simple_cnn" if QUICK else "mobilenet_v3_small",
    help="A name of kt.recipes.available_backbones().",
)
parser.add_argument("--weights", default=None, help="'imagenet', a local weights file, or omit for random init.")
parser.add_argument("--image-size", type=int, default=None, help="Side in pixels (default: the images' own).")
parser.add_argument("--epochs", type=int, default=1 if QUICK else 5)
parser.add_argument("--export", default="exported_model", help="SavedModel folder to write.")
parser.add_argument("--save", default="model.keras", help=".keras file to write.")
parser.add_argument(
    "--overwrite",
    action="store_true",
    help="Replace a previous --export folder (one holding saved_model.pb) or --save file.",
)
# A notebook kernel's sys.argv holds its own arguments (`-f kernel.json`): keep the defaults there.
# (`%run examples/<name>.py --seed 1` in a notebook passes its arguments as on the command line.)
NOTEBOOK = "ipykernel" in sys.modules and "-f" in sys.argv[1:]
args = parser.parse_args([] if NOTEBOOK else None)

# %% [markdown]
# ## The image folder
#
# Without a `data` folder, the embedded digits (32x32, 10 classes) are written as PNG files,
# one sub-folder per class, to a temporary folder that is removed when Python exits.

# %%
if args.data is None:
    args.data = tempfile.mkdtemp(prefix="keras_transfer_digits_")
    atexit.register(shutil.rmtree, args.data, ignore_errors=True)
    (images, labels), _ = kt.datasets.load_digits(image_size=32, channels=3)
    per_class = 12 if QUICK else None
    for label in np.unique(labels):
        os.makedirs(os.path.join(args.data, f"digit{label}"))
        for i, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            Image.fromarray(images[index]).save(os.path.join(args.data, f"digit{label}", f"{i}.png"))
    print(f"No folder given: wrote {len(os.listdir(args.data))} classes of embedded digits to {args.data}")

# %% [markdown]
# ## Fine-tune, evaluate, save and export
#
# `finetune_folder` checks everything that can fail before training (arguments, output paths,
# every image decoded once), builds the backbone with a new head, runs the linear probe then
# fine-tunes, evaluates on the validation (and test) split, saves the `.keras` file and exports a
# SavedModel for TF Serving (pixel and encoded-image endpoints, `class_names.txt` beside them).
# Errors you can fix (a missing folder, an output that exists, an offline `imagenet`) end the script
# with one line saying what to do.

# %%
try:
    _, summary = finetune_folder(
        args.data,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        export=args.export,
        save=args.save,
        overwrite=args.overwrite,
        verbose=1 if NOTEBOOK else 2,
    )
except (ValueError, OSError) as error:  # as `keras-transfer finetune`; OfflineError is an OSError
    if NOTEBOOK:
        raise
    parser.exit(2, f"{parser.prog}: error: {error}\n")

print(f"Classes: {', '.join(summary['class_names'])}")
print(f"Examples: train {summary['num_train']}, validation {summary['num_validation']}, test {summary['num_test']}")
for part in ("validation", "test"):
    if part in summary:
        print(f"{part}: " + ", ".join(f"{name} {value:.4f}" for name, value in summary[part].items()))
print(f"Saved {summary['saved']}, exported {summary['exported']}/")
