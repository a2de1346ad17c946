"""`tfds.load` for users with internet, with a clear, fast error offline."""

import os

from keras_transfer.utils.network import OfflineError
from keras_transfer.utils.network import is_online


def load_tfds(name, split="train", data_dir=None, as_supervised=True, download=True, **kwargs):
    """Loads a TensorFlow Datasets dataset, failing within seconds when it would need a download offline.

    Offline, `tfds.load` would retry its downloads for minutes; this function
    checks first whether the dataset is prepared in `data_dir` or the machine
    is online.

    Args:
        name: tfds name, e.g. "omniglot" or "mnist".
        split: tfds split string.
        data_dir: where tfds keeps prepared datasets (default `~/tensorflow_datasets`).
        as_supervised: return `(image, label)` pairs instead of feature dicts.
        download: allow downloading when the dataset is not prepared locally.
        **kwargs: passed to `tfds.load`.

    Returns:
        What `tfds.load` returns: a `tf.data.Dataset` (or a structure of them
        for a list of splits).

    Raises:
        ValueError: if `name` is not a tfds dataset (close names are suggested).
        keras_transfer.utils.network.OfflineError: (an `OSError`) if the dataset
            is not prepared and cannot be downloaded.

    Example:

    >>> import tempfile
    >>> keras_transfer.datasets.load_tfds("mnist", data_dir=tempfile.mkdtemp(), download=False)
    Traceback (most recent call last):
    ...
    keras_transfer.utils.network.OfflineError: The tfds dataset 'mnist' is not prepared in ...
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises DatasetNotFoundError and friends
        # tfds' own message lists every dataset: keep its first line and suggest close names instead.
        import difflib

        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        close = difflib.get_close_matches(str(name), tfds.list_builders(), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(
            f"`name` must be a TensorFlow Datasets name (see tfds.list_builders()).{hint} "
            f"Received: name={name!r} ({first_line})"
        ) from error
    prepared = os.path.isdir(builder.data_dir) and bool(os.listdir(builder.data_dir))
    if not prepared and (not download or not is_online()):
        raise OfflineError(
            f"The tfds dataset {name!r} is not prepared in {builder.data_dir!r} and "
            + ("download=False." if not download else "this machine has no internet access.")
            + " Prepare it on a machine with internet (`tfds.load(name)` there) and copy the folder, "
            "pass data_dir= where it already is, or use a local folder with "
            "keras_transfer.datasets.load_image_folder."
        )
    return tfds.load(name, split=split, data_dir=data_dir, as_supervised=as_supervised, download=download, **kwargs)
