"""A local folder of images as `tf.data`, checked before training starts.

Two layouts are read: `root/<label>/*.png` (the `keras.utils.image_dataset_from_directory`
layout) and `root/<split>/<label>/*.png` (the tfds `ImageFolder` layout, splits such as
`train`, `val`/`validation`, `test`).
"""

import dataclasses
import os

import keras
import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
SPLIT_NAMES = ("train", "val", "validation", "test")


@dataclasses.dataclass
class ImageFolderData:
    train: object
    validation: object
    test: object
    class_names: list
    image_size: tuple
    num_train: int
    num_validation: int
    num_test: int


def _images_in(folder):
    return sorted(
        os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)
    )


def scan_image_folder(root):
    """Checks a `root/<label>/*` folder: returns {label: [paths]} and the set of image sizes.

    Raises `ValueError` for a missing or empty folder, a single class, or unreadable images.
    """
    from PIL import Image

    if not os.path.isdir(root):
        raise ValueError(f"`data` must be an existing folder. Received: data={root!r}")
    labels = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    files = {label: _images_in(os.path.join(root, label)) for label in labels}
    files = {label: paths for label, paths in files.items() if paths}
    if not files:
        raise ValueError(
            f"`data` must hold one sub-folder of images per class ({'/'.join(IMAGE_EXTENSIONS)}). "
            f"Received: data={root!r}, which has no images in class sub-folders."
        )
    if len(files) < 2:
        raise ValueError(
            f"`data` must hold at least 2 classes (sub-folders with images). Received: data={root!r} "
            f"with the single class {list(files)}. Add a folder per class."
        )
    sizes, bad = set(), []
    for paths in files.values():
        for path in paths:
            try:
                with Image.open(path) as image:
                    image.verify()
                with Image.open(path) as image:
                    sizes.add(image.size[::-1])
            except Exception as error:  # PIL raises many types for broken files
                bad.append(f"{path} ({type(error).__name__})")
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"`data` must contain only readable images. Received {len(bad)} unreadable file(s): {shown}. "
            "Remove or re-encode them."
        )
    return files, sizes


def load_image_folder(
    root,
    image_size=None,
    batch_size=32,
    validation_split=0.2,
    seed=0,
    color_mode="rgb",
):
    """Reads an image folder into batched `(image, label)` datasets.

    Args:
        root: `root/<label>/*` or `root/<split>/<label>/*` (splits train, val/validation, test).
        image_size: (height, width) to resize to. Required when the images have mixed sizes.
        validation_split: share of `train` held out when the folder has no validation split.
        color_mode: "rgb" or "grayscale".

    Returns:
        `ImageFolderData` with `train`, `validation`, `test` (None when absent), class names and counts.
        Images are float32 in [0, 255].
    """
    if not os.path.isdir(root):
        raise ValueError(f"`data` must be an existing folder. Received: data={root!r}")
    subdirs = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    split_layout = "train" in subdirs and all(d in SPLIT_NAMES for d in subdirs)
    splits = {d: os.path.join(root, d) for d in subdirs} if split_layout else {"train": root}
    scanned = {name: scan_image_folder(path) for name, path in splits.items()}
    class_names = sorted(scanned["train"][0])
    for name, (files, _) in scanned.items():
        extra = sorted(set(files) - set(class_names))
        if extra:
            raise ValueError(
                f"`data` split '{name}' must use the classes of 'train' {class_names}. Received extra classes {extra}."
            )
    sizes = set().union(*(s for _, s in scanned.values()))
    if image_size is None:
        if len(sizes) > 1:
            shown = sorted(sizes)[:4]
            raise ValueError(
                f"`image_size` must be given when the images have mixed sizes. Received: image_size=None "
                f"with image sizes such as {shown}. Pass image_size=(height, width) (CLI: --image-size)."
            )
        image_size = next(iter(sizes))
    elif isinstance(image_size, int):
        image_size = (image_size, image_size)

    def read(path, subset=None, split=None):
        return keras.utils.image_dataset_from_directory(
            path,
            labels="inferred",
            label_mode="int",
            class_names=class_names,
            color_mode=color_mode,
            batch_size=batch_size,
            image_size=tuple(image_size),
            shuffle=True,
            seed=seed,
            validation_split=split,
            subset=subset,
            verbose=False,
        )

    def count(files):
        return int(sum(len(v) for v in files.values()))

    n_train = count(scanned["train"][0])
    val_dir = splits.get("val") or splits.get("validation")
    if val_dir is not None:
        train, val = read(splits["train"]), read(val_dir)
        n_val = count(scanned["val" if "val" in splits else "validation"][0])
    elif validation_split:
        train = read(splits["train"], "training", validation_split)
        val = read(splits["train"], "validation", validation_split)
        n_val = int(np.floor(n_train * validation_split))
        n_train -= n_val
    else:
        train, val, n_val = read(splits["train"]), None, 0
    test = read(splits["test"]) if "test" in splits else None
    n_test = count(scanned["test"][0]) if "test" in splits else 0
    return ImageFolderData(train, val, test, class_names, tuple(image_size), n_train, n_val, n_test)
