"""`keras-transfer finetune`: the real job on a folder of images."""

import os
import tempfile
import uuid

import keras

from keras_transfer.datasets.image_folder import load_image_folder
from keras_transfer.recipes import backbones as backbones_lib
from keras_transfer.recipes.classifier import build_classifier
from keras_transfer.recipes.fine_tune import fine_tune
from keras_transfer.serving.image_classifier import export_image_classifier
from keras_transfer.utils import validation


def parse_blocks(text):
    """'all' / 'first' / 'middle' / 'last' / 'auto', or comma-separated block names."""
    if text is None:
        return "all"
    text = text.strip()
    if text in ("all", "first", "middle", "last", "auto"):
        return text
    return [part.strip() for part in text.split(",") if part.strip()]


SAVE_EXTENSIONS = (".keras", ".h5")


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _is_inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_location(arg, path):
    """The folders above `path` can be created and written to (a probe file, created then removed)."""
    ancestor = _nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(ancestor):
        raise ValueError(
            f"`{arg}` must be a path whose folders can be created. Received: {arg}={path!r}, but "
            f"{ancestor!r} is a file, not a folder. Choose another path."
        )
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise ValueError(
            f"`{arg}` must be in a folder you can write to. Received: {arg}={path!r}, but {ancestor!r} "
            f"is not writable ({error.strerror or error}). Choose another path."
        ) from None


def check_output_paths(export=None, save=None, overwrite=False, data=None):
    """Checks, before any training, that `export` and `save` can be written.

    Nothing is created or changed: the checks only read, plus one probe file created and
    removed in the nearest existing folder.

    Args:
        export: folder for the SavedModel, or None. It must not exist, or be empty, or (with
            `overwrite=True`) hold a previous export (a `saved_model.pb`), which is then replaced
            as a whole.
        save: `.keras` (or legacy `.h5`) file path, or None. An existing file is replaced only
            with `overwrite=True`.
        overwrite: allow replacing a previous export or model file.
        data: the training data folder; neither output may contain it.

    Raises:
        ValueError: naming the argument, the path and what to do.
    """
    fix = "Pass overwrite=True (CLI: --overwrite) to replace it, or choose a new path."
    if save is not None:
        save = os.fspath(save)
        if not save.lower().endswith(SAVE_EXTENSIONS):
            raise ValueError(
                f"`save` must be a file path ending in .keras. Received: save={save!r}. "
                f"Add the .keras extension (for example {os.path.splitext(save)[0] + '.keras'!r})."
            )
        if os.path.isdir(save):
            raise ValueError(
                f"`save` must be a file path, not a folder. Received: save={save!r}, which is an existing "
                "folder. Choose a file name such as model.keras."
            )
        if os.path.lexists(save) and not overwrite:
            raise ValueError(f"`save` must not be an existing file. Received: save={save!r}, which exists. {fix}")
        _check_location("save", save)
    if export is not None:
        export = os.fspath(export)
        if os.path.lexists(export) and not os.path.isdir(export):
            raise ValueError(
                f"`export` must be a folder path. Received: export={export!r}, which is an existing file. "
                "Choose a folder name."
            )
        if data is not None and (_is_inside(data, export) or _is_inside(export, data)):
            raise ValueError(
                f"`export` must be outside the training data folder (inside, it would read as a class "
                f"next time). Received: export={export!r}, data={os.fspath(data)!r}. Choose another folder."
            )
        if save is not None and _is_inside(save, export):
            raise ValueError(
                f"`save` must be outside the `export` folder (the export is written as a whole). Received: "
                f"save={save!r}, export={export!r}. Put the .keras file beside the folder."
            )
        if os.path.isdir(export) and os.listdir(export):
            if not overwrite:
                raise ValueError(
                    f"`export` must be a new or empty folder. Received: export={export!r}, which already holds "
                    f"files ({', '.join(sorted(os.listdir(export))[:3])}). {fix}"
                )
            if not os.path.isfile(os.path.join(export, "saved_model.pb")):
                raise ValueError(
                    f"`export` must be a new or empty folder, or a previous export to replace. Received: "
                    f"export={export!r}, which holds files but no saved_model.pb, so it is not an export. "
                    "Nothing was deleted; choose a new folder."
                )
        _check_location("export", export)


def write_model_file(model, path):
    """`model.save(path)` through a temporary file beside it, then an atomic rename.

    A failure leaves any previous file at `path` untouched.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    extension = ".h5" if path.lower().endswith(".h5") else ".keras"
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp{extension}")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_export(model, path, class_names):
    """Exports the classifier for TF Serving with `export_image_classifier`.

    Endpoints for float pixels and for encoded PNG/JPEG bytes, answering with scores and class
    names; `class_names.txt` beside them. Written beside `path` and swapped in as a whole: nothing
    from a previous folder at `path` survives, and a failure leaves that folder untouched.
    `check_output_paths` has already checked that `path` is new, empty or an earlier export.
    """
    export_image_classifier(model, path, class_names=class_names, overwrite=True)


def _build_model(backbone, num_classes, input_shape, weights, mixed_precision):
    """`build_classifier` under the `mixed_precision` dtype policy (if any); the global policy is restored."""
    if mixed_precision is None:
        return build_classifier(backbone, num_classes, input_shape, weights=weights)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(mixed_precision)
    try:
        return build_classifier(backbone, num_classes, input_shape, weights=weights)
    finally:
        keras.config.set_dtype_policy(previous)


def finetune_folder(
    data,
    backbone="mobilenet_v3_small",
    weights=None,
    image_size=None,
    epochs=5,
    probe_epochs=0,
    batch_size=32,
    learning_rate=1e-4,
    blocks="all",
    validation_split=0.2,
    export=None,
    save=None,
    seed=0,
    verbose=1,
    overwrite=False,
    mixed_precision=None,
    jit_compile="auto",
    callbacks=None,
):
    """Linear probe then fine-tune a registry backbone on an image folder; optionally export.

    Every check that can fail runs before training: the arguments, the `export`/`save` paths
    (`check_output_paths`) and the whole image folder (every image is decoded once).

    Args:
        export: folder for the SavedModel (plus `class_names.txt`); see `check_output_paths`.
        save: path of the `.keras` file.
        overwrite: replace a previous export folder or model file (never any other files).
        mixed_precision: None (float32), "mixed_float16" or "mixed_bfloat16": the Keras dtype
            policy the model is built with (float32 head and variables). Faster on GPUs with
            tensor cores and TPUs; slower on CPUs without bf16/fp16 units. The global policy
            is restored afterwards; the saved and exported model keep the mixed policy.
        jit_compile: "auto" (Keras's choice: XLA on a GPU or TPU, not on a CPU), True or False.
        callbacks: Keras callbacks passed to each `fit` (e.g. `keras.callbacks.CSVLogger`).

    Returns:
        (model, summary dict with class names, example counts, the ignored non-image files
        and validation/test metrics).
    """
    backbones_lib.get_spec(backbone)
    validation.check_non_negative_int("epochs", epochs)
    validation.check_non_negative_int("probe_epochs", probe_epochs)
    validation.check_positive_int("batch_size", batch_size)
    validation.check_fraction("validation_split", validation_split)
    if blocks == "auto" and not validation_split:
        raise ValueError(
            "`validation_split` must be positive with blocks='auto' (the blocks are chosen by validation "
            f"accuracy). Received: validation_split={validation_split}"
        )
    if image_size is not None and not isinstance(image_size, (tuple, list)):
        validation.check_positive_int("image_size", image_size, "Pass the side in pixels, such as 224.")
    validation.check_one_of("mixed_precision", mixed_precision, (None, "mixed_float16", "mixed_bfloat16"))
    validation.check_one_of("jit_compile", jit_compile, ("auto", True, False))
    check_output_paths(export=export, save=save, overwrite=overwrite, data=data)
    folder = load_image_folder(
        data, image_size=image_size, batch_size=batch_size, validation_split=validation_split, seed=seed
    )
    model = _build_model(backbone, len(folder.class_names), (*folder.image_size, 3), weights, mixed_precision)
    model, histories = fine_tune(
        model,
        folder.train,
        validation_data=folder.validation,
        probe="convex" if probe_epochs == 0 else "fit",
        probe_epochs=max(probe_epochs, 1),
        epochs=epochs,
        learning_rate=learning_rate,
        blocks=parse_blocks(blocks) if isinstance(blocks, str) or blocks is None else blocks,
        batch_size=batch_size,
        verbose=verbose,
        seed=seed,
        jit_compile=jit_compile,
        callbacks=callbacks,
    )
    summary = {
        "class_names": folder.class_names,
        "num_train": folder.num_train,
        "num_validation": folder.num_validation,
        "num_test": folder.num_test,
        "ignored": folder.ignored,
    }
    if "blocks" in histories:  # blocks="auto": the choice and each choice's validation accuracy
        summary["blocks"] = histories["blocks"]
    if folder.validation is not None:
        summary["validation"] = model.evaluate(folder.validation, verbose=0, return_dict=True)
    if folder.test is not None:
        summary["test"] = model.evaluate(folder.test, verbose=0, return_dict=True)
    if save:
        check_output_paths(save=save, overwrite=overwrite)  # again: something may have appeared since
        write_model_file(model, save)
        summary["saved"] = save
    if export:
        check_output_paths(export=export, overwrite=overwrite)
        write_export(model, export, folder.class_names)
        summary["exported"] = export
    return model, summary
