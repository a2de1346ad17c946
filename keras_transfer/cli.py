"""The `keras-transfer` console entry point."""

import argparse
import importlib
import os
import re
import sys
import threading
import time

# Each demo section is a module under keras_transfer.demos with
# `run(output_dir, quick=False) -> dict` that prints its own table.
DEMO_SECTIONS = [
    ("transfer", "keras_transfer.demos.transfer"),
    ("adapters", "keras_transfer.demos.adapters"),
    ("self_supervised", "keras_transfer.demos.self_supervised"),
    ("clip", "keras_transfer.demos.clip"),
    ("text", "keras_transfer.demos.text"),
    ("domain_adaptation", "keras_transfer.demos.domain_adaptation"),
    ("meta_learning", "keras_transfer.demos.meta_learning"),
    ("choosing", "keras_transfer.demos.choosing"),
]


# TensorFlow's native start-up and decoder lines that say nothing a user can act on. They are
# written by C++ straight to file descriptor 2, several before absl's logging is initialised, so
# neither `TF_CPP_MIN_LOG_LEVEL` nor Python's `warnings` reach them. Only the CLI process filters
# them (`quiet_native_stderr`); importing keras_transfer as a library changes nothing.
STARTUP_NOISE = re.compile(
    "|".join(
        [
            r"All log messages before absl::InitializeLog\(\) is called are written to STDERR",
            r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
            r"cuda_platform\.cc:\d+\] failed call to cuInit: .*UNKNOWN ERROR \(303\)",  # no driver at all
            r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory",
            r"computation_placer\.cc:\d+\] computation placer already registered",
            r"TF-TRT Warning: Could not find TensorRT",
            r"oneDNN custom operations are on",
            r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
            r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags",
            # Decoder diagnostics: keras-transfer decodes every image before training and names the bad ones.
            r"jpeg_mem\.cc:\d+\] ",
            r"local_rendezvous\.cc:\d+\] Local rendezvous is aborting with status: INVALID_ARGUMENT",
        ]
    )
)


class _NativeStderrFilter:
    """Routes file descriptor 2 through a pipe and drops the lines matching `STARTUP_NOISE`.

    Everything else (Python warnings, tracebacks, TensorFlow errors that matter) is passed on
    line by line as it comes.
    """

    def __init__(self):
        self._saved = None
        self._thread = None

    def start(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, os.dup(self._saved)), daemon=True)
        self._thread.start()

    @staticmethod
    def _pump(read_end, out_fd):
        with os.fdopen(read_end, "rb") as pipe, os.fdopen(out_fd, "wb", buffering=0) as out:
            for line in pipe:
                try:
                    keep = not STARTUP_NOISE.search(line.decode("utf-8", "replace"))
                except Exception:  # pass the line on unfiltered rather than lose it
                    keep = True
                if keep:
                    try:
                        out.write(line)
                    except OSError:  # the real stderr is gone: keep draining so writers never block
                        pass

    def stop(self):
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)  # closes the pipe's write end: the pump reads to the end and stops
        os.close(self._saved)
        self._thread.join(timeout=10)


_ACTIVE_FILTER = []


def quiet_native_stderr():
    """Starts filtering TensorFlow's start-up noise from stderr, for the `keras-transfer` process only.

    Idempotent. `main()` calls it, which catches everything printed after the package import. The
    lines TensorFlow prints while it is imported are caught only if this runs before that import:
    the console script imports `keras_transfer` (and so TensorFlow) before `main()`, so the
    package's `__init__` has to call it first when the process is `keras-transfer` (this module
    imports nothing but the standard library, so that is cheap and safe).
    `KERAS_TRANSFER_VERBOSE_STDERR=1` turns the filter off.
    `TF_CPP_MIN_LOG_LEVEL` defaults to 2 (no INFO or WARNING lines from TensorFlow's C++ code)
    unless the user set it.

    Returns:
        True when the filter is running.

    Example:

    >>> import keras_transfer.cli
    >>> running = keras_transfer.cli.quiet_native_stderr()  # False when stderr has no file descriptor
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _ACTIVE_FILTER:
        return True
    if os.environ.get("KERAS_TRANSFER_VERBOSE_STDERR", "") not in ("", "0"):
        return False
    try:
        sys.stderr.fileno()
        stderr_filter = _NativeStderrFilter()
        stderr_filter.start()
    except (AttributeError, OSError, ValueError):  # no real file descriptor 2 (embedded, captured)
        return False
    _ACTIVE_FILTER.append(stderr_filter)
    return True


def _stop_quiet_native_stderr():
    while _ACTIVE_FILTER:
        _ACTIVE_FILTER.pop().stop()


def _one_line(error):
    """An exception's message on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def _demo(args):
    names = [name for name, _ in DEMO_SECTIONS]
    wanted = names if args.sections in (None, "all") else args.sections.split(",")
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise SystemExit(f"keras-transfer demo: unknown section(s) {unknown}. Available: {', '.join(names)}")
    os.makedirs(args.output, exist_ok=True)
    results = {}
    for name, module_name in DEMO_SECTIONS:
        if name not in wanted:
            continue
        print(f"\n=== keras-transfer demo: {name} ===", flush=True)
        start = time.time()
        module = importlib.import_module(module_name)
        results[name] = module.run(os.path.join(args.output, name), quick=args.quick)
        print(f"--- {name} done in {time.time() - start:.0f} s", flush=True)
    print(f"\nAll outputs are in {os.path.abspath(args.output)}")
    return results


def _finetune(args):
    from keras_transfer.recipes.finetune_job import finetune_folder

    _, summary = finetune_folder(
        args.data,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        epochs=args.epochs,
        probe_epochs=args.probe_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        blocks=args.blocks,
        validation_split=args.validation_split,
        export=args.export,
        save=args.save,
        seed=args.seed,
        overwrite=getattr(args, "overwrite", False),
        mixed_precision=f"mixed_{args.mixed_precision}" if getattr(args, "mixed_precision", None) else None,
        jit_compile={"auto": "auto", "on": True, "off": False}[getattr(args, "jit_compile", "auto")],
    )
    if summary["ignored"]:
        shown = ", ".join(summary["ignored"][:3]) + (", ..." if len(summary["ignored"]) > 3 else "")
        print(f"Ignored {len(summary['ignored'])} file(s) that are not .png/.jpg/.jpeg/.bmp/.gif images: {shown}")
    print(f"Classes: {', '.join(summary['class_names'])}")
    print(f"Examples: train {summary['num_train']}, validation {summary['num_validation']}, test {summary['num_test']}")
    if "blocks" in summary:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in summary["blocks"]["val_accuracy"].items())
        print(f"Fine-tuned blocks: {summary['blocks']['chosen']} (validation accuracy: {scores})")
    for part in ("validation", "test"):
        if part in summary:
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in summary[part].items())
            print(f"{part}: {metrics}")
    for key in ("saved", "exported"):
        if key in summary:
            print(f"{key}: {summary[key]}")
    return summary


def build_parser():
    """The `argparse` parser of the `keras-transfer` command and its two subcommands.

    `keras-transfer demo` runs the tour on embedded data; `keras-transfer finetune --data DIR`
    fine-tunes a `keras.applications` backbone on an image folder
    (`keras_transfer.recipes.finetune_job.finetune_folder`).

    Returns:
        An `argparse.ArgumentParser`; the parsed namespace's `func` runs the subcommand.

    Example:

    >>> import keras_transfer.cli
    >>> parser = keras_transfer.cli.build_parser()
    >>> args = parser.parse_args(["finetune", "--data", "images", "--epochs", "2"])
    >>> args.command, args.data, args.epochs, args.backbone
    ('finetune', 'images', 2, 'mobilenet_v3_small')
    """
    parser = argparse.ArgumentParser(prog="keras-transfer", description="Transfer learning for Keras 3.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="A tour of keras_transfer on embedded data.")
    demo.add_argument("--sections", default="all", help="Comma-separated sections or 'all'.")
    demo.add_argument("--output", default="keras_transfer_output", help="Output folder.")
    demo.add_argument("--quick", action="store_true", help="Tiny settings (seconds, for CI).")
    demo.set_defaults(func=_demo)

    ft = sub.add_parser("finetune", help="Fine-tune a keras.applications backbone on an image folder.")
    ft.add_argument("--data", required=True, help="Folder: DIR/<split>/<label>/*.png or DIR/<label>/*.png")
    ft.add_argument("--backbone", default="mobilenet_v3_small")
    ft.add_argument("--weights", default=None, help="'imagenet', a local weights file, or omit for random init.")
    ft.add_argument("--image-size", type=int, default=None)
    ft.add_argument("--epochs", type=int, default=5, help="Fine-tuning epochs after the linear probe.")
    ft.add_argument("--probe-epochs", type=int, default=0, help="0 uses the convex linear probe.")
    ft.add_argument("--batch-size", type=int, default=32)
    ft.add_argument("--learning-rate", type=float, default=1e-4)
    ft.add_argument(
        "--blocks",
        default=None,
        help="'all', 'first', 'middle', 'last', 'auto' (best of those on the validation split) or block names.",
    )
    ft.add_argument("--validation-split", type=float, default=0.2)
    ft.add_argument("--export", default=None, help="Where to write the SavedModel.")
    ft.add_argument("--save", default=None, help="Where to write the .keras file.")
    ft.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace a previous --export folder (one holding saved_model.pb) or --save file.",
    )
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument(
        "--mixed-precision",
        choices=("float16", "bfloat16"),
        default=None,
        help="Train in mixed precision (float32 variables and head): float16 for GPUs, bfloat16 for TPUs "
        "and recent CPUs. Slower on CPUs without such units.",
    )
    ft.add_argument(
        "--jit-compile",
        choices=("auto", "on", "off"),
        default="auto",
        help="XLA compilation of the training steps; 'auto' is Keras's choice (on a GPU/TPU, off on a CPU).",
    )
    ft.set_defaults(func=_finetune)
    return parser


def main(argv=None):
    """Runs the `keras-transfer` command and returns its exit status.

    Errors the user can fix (`ValueError`, `OSError`, offline downloads) print one line on
    stderr, "keras-transfer: error: ...", and no traceback.

    Args:
        argv: the command-line arguments without the program name, or None for `sys.argv[1:]`.

    Returns:
        The exit status: 0 on success, 2 for an input error, 130 when interrupted.

    Raises:
        SystemExit: for a usage error (status 2, from `argparse`) or an unknown demo section.

    Example:

    >>> import keras_transfer.cli
    >>> keras_transfer.cli.main(["finetune", "--data", "no_such_folder"])  # prints the error on stderr
    2
    """
    args = build_parser().parse_args(argv)
    quiet_native_stderr()
    try:
        args.func(args)
    except (ValueError, OSError) as error:  # OfflineError is an OSError
        print(f"keras-transfer: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-transfer: interrupted", file=sys.stderr)
        return 130
    finally:
        _stop_quiet_native_stderr()
    return 0


if __name__ == "__main__":
    sys.exit(main())
