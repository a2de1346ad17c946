"""A local folder of images as `tf.data`, checked before training starts.

Two layouts are read: `root/<label>/*.png` (the `keras.utils.image_dataset_from_directory`
layout) and `root/<split>/<label>/*.png` (the tfds `ImageFolder` layout, splits such as
`train`, `val`/`validation`, `test`).
"""

import dataclasses
import os
import re

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
    ignored: list = dataclasses.field(default_factory=list)  # files skipped: not an image extension


def _files_in(folder):
    """Every file under `folder`, sub-folders included (as `image_dataset_from_directory` walks)."""
    return sorted(os.path.join(path, name) for path, _, names in os.walk(folder) for name in names)


def _images_in(folder):
    return [path for path in _files_in(folder) if path.lower().endswith(IMAGE_EXTENSIONS)]


def _ignored_in(folder):
    """Visible files under `folder` that are not read as images (their extension is not an image one)."""
    return [
        path
        for path in _files_in(folder)
        if not os.path.basename(path).startswith(".") and not path.lower().endswith(IMAGE_EXTENSIONS)
    ]


def _decode_error_reason(error):
    """A short, readable reason from a TensorFlow decode error."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S).strip()
    if "Unknown image file format" in text:
        return "not an image: its content is not JPEG, PNG, GIF or BMP"
    if "Invalid JPEG data" in text or "jpeg::Uncompress failed" in text:
        return "truncated or corrupt JPEG"
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:120]


def _decode_check(paths, channels):
    """Decodes every file exactly as the input pipeline will (`tf.io.decode_image`).

    The decoding runs in parallel in a `tf.data` pipeline; files that fail are decoded once
    more, eagerly, to get the reason. Memory stays bounded by a few images.

    Returns:
        (set of (height, width) sizes, list of (path, reason) for the files that do not decode).
    """
    import tensorflow as tf

    if not paths:
        return set(), []

    @tf.autograph.experimental.do_not_convert
    def shape_of(path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
        return path, tf.shape(image)[:2]

    dataset = (
        tf.data.Dataset.from_tensor_slices(paths).map(shape_of, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    )
    sizes, decoded = set(), set()
    for path, shape in dataset.as_numpy_iterator():
        decoded.add(path.decode())
        sizes.add((int(shape[0]), int(shape[1])))
    bad = []
    for path in paths:
        if path in decoded:
            continue
        reason = "unreadable"
        if len(bad) < 5:  # only the ones the message shows
            try:
                tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
            except (tf.errors.OpError, OSError) as error:
                reason = _decode_error_reason(error)
        bad.append((path, reason))
    return sizes, bad


def scan_image_folder(root, channels=3):
    """Checks a `root/<label>/*` folder: returns {label: [paths]} and the set of image sizes.

    Every image is decoded in full, with the decoder the input pipeline uses, so a truncated
    JPEG or a web page saved as `.jpg` is reported here, by name, before training starts (the
    cost is about one epoch of decoding, spread over the CPU cores).

    Args:
        root: a folder with one sub-folder of images per class.
        channels: channels to decode to (3 for RGB; alpha and palette images are converted).

    Returns:
        ({label: sorted image paths}, set of (height, width) image sizes).

    Raises:
        ValueError: for a missing or empty folder, a single class, or unreadable images.
    """
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
    sizes, bad = _decode_check([path for paths in files.values() for path in paths], channels)
    if bad:
        shown = "; ".join(f"{path} ({reason})" for path, reason in bad[:5])
        shown += f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(
            f"`data` must contain only readable images. Received {len(bad)} unreadable file(s): {shown}. "
            "Remove or re-encode them."
        )
    return files, sizes


def _check_split_classes(scanned, splits, class_names):
    """Every split must hold images of exactly the classes of 'train'."""
    for name, (files, _) in scanned.items():
        extra = sorted(set(files) - set(class_names))
        if extra:
            raise ValueError(
                f"`data` split '{name}' must use the classes of 'train' {class_names}. Received extra classes {extra}."
            )
        missing = sorted(set(class_names) - set(files))
        if missing:
            folders = ", ".join(os.path.join(splits[name], label) for label in missing)
            raise ValueError(
                f"`data` split '{name}' must have images of every class of 'train' {class_names}. Received: "
                f"no images for class(es) {missing} (folder(s) {folders} missing or empty). Add images there, "
                f"or remove the class(es) from every split."
            )


def _resolve_image_size(image_size, sizes):
    """(height, width): the given size, or the one size all images share."""
    if image_size is None:
        if len(sizes) > 1:
            shown = sorted(sizes)[:4]
            raise ValueError(
                f"`image_size` must be given when the images have mixed sizes. Received: image_size=None "
                f"with image sizes such as {shown}. Pass image_size=(height, width) (CLI: --image-size)."
            )
        return next(iter(sizes))
    if isinstance(image_size, int):
        return (image_size, image_size)
    return image_size


def load_image_folder(
    root,
    image_size=None,
    batch_size=32,
    validation_split=0.2,
    seed=0,
    color_mode="rgb",
):
    """Reads an image folder into batched `(image, label)` datasets, checked first.

    Every image is decoded once before the datasets are made, so a corrupt file
    is reported by name before training starts. Two layouts are read:
    `root/<label>/*` (as `keras.utils.image_dataset_from_directory`) and
    `root/<split>/<label>/*` with splits `train`, `val` or `validation`, `test`
    (as tfds' `ImageFolder`).

    Args:
        root: `root/<label>/*` or `root/<split>/<label>/*` (splits train, val/validation, test).
        image_size: int or (height, width) to resize to. Required when the
            images have mixed sizes.
        batch_size: images per batch.
        validation_split: share of `train` held out when the folder has no
            validation split (0 or None: no validation set).
        seed: seed of the shuffling and of the validation split.
        color_mode: "rgb", "grayscale" or "rgba". With "rgb", images with alpha or a palette are
            converted to RGB.

    Returns:
        `ImageFolderData` with `train`, `validation`, `test` (None when absent), class names, counts,
        and `ignored`: the files in class folders that were skipped because their extension is not
        an image one (`.png/.jpg/.jpeg/.bmp/.gif`; hidden files are not listed).
        Images are float32 in [0, 255].

    Raises:
        ValueError: before any training, naming the file, split or class, for a missing or empty
            folder, a single class, a file that does not decode, a split without some class,
            mixed image sizes without `image_size`, or an unknown `color_mode`.

    Example:

    >>> import os, tempfile
    >>> import tensorflow as tf
    >>> root = tempfile.mkdtemp()
    >>> for label in ("cat", "dog"):
    ...     os.makedirs(os.path.join(root, label))
    ...     for i in range(5):
    ...         png = tf.io.encode_png(np.full((8, 8, 3), 40 * i, "uint8"))
    ...         _ = tf.io.write_file(os.path.join(root, label, f"{i}.png"), png)
    >>> data = keras_transfer.datasets.load_image_folder(root, batch_size=4)
    Using 8 files for training.
    Using 2 files for validation.
    >>> data.class_names, data.num_train, data.num_validation, data.test
    (['cat', 'dog'], 8, 2, None)
    >>> images, labels = next(iter(data.train))
    >>> tuple(images.shape[1:]), images.dtype.name
    ((8, 8, 3), 'float32')
    """
    channels = {"rgb": 3, "grayscale": 1, "rgba": 4}
    if color_mode not in channels:
        raise ValueError(f"`color_mode` must be one of {sorted(channels)}. Received: color_mode={color_mode!r}")
    if not os.path.isdir(root):
        raise ValueError(f"`data` must be an existing folder. Received: data={root!r}")
    subdirs = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    split_layout = "train" in subdirs and all(d in SPLIT_NAMES for d in subdirs)
    splits = {d: os.path.join(root, d) for d in subdirs} if split_layout else {"train": root}
    scanned = {name: scan_image_folder(path, channels=channels[color_mode]) for name, path in splits.items()}
    class_names = sorted(scanned["train"][0])
    _check_split_classes(scanned, splits, class_names)
    ignored = sorted(
        path
        for split_dir in splits.values()
        for label in class_names
        if os.path.isdir(os.path.join(split_dir, label))
        for path in _ignored_in(os.path.join(split_dir, label))
    )
    image_size = _resolve_image_size(image_size, set().union(*(s for _, s in scanned.values())))

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
    return ImageFolderData(train, val, test, class_names, tuple(image_size), n_train, n_val, n_test, ignored)
