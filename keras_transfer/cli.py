"""The `keras-transfer` console entry point."""

import argparse
import importlib
import os
import sys
import time

# Each demo section is a module under keras_transfer.demos with
# `run(output_dir, quick=False) -> dict` that prints its own table.
DEMO_SECTIONS = [
    ("transfer", "keras_transfer.demos.transfer"),
    ("adapters", "keras_transfer.demos.adapters"),
    ("self_supervised", "keras_transfer.demos.self_supervised"),
    ("clip", "keras_transfer.demos.clip"),
    ("domain_adaptation", "keras_transfer.demos.domain_adaptation"),
    ("meta_learning", "keras_transfer.demos.meta_learning"),
]


def _demo(args):
    names = [name for name, _ in DEMO_SECTIONS]
    wanted = names if args.sections in (None, "all") else args.sections.split(",")
    unknown = [name for name in wanted if name not in names]
    if unknown:
        raise SystemExit(
            f"keras-transfer demo: unknown section(s) {unknown}. Available: {', '.join(names)}"
        )
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
    from keras_transfer.recipes import finetune_job

    finetune_job.run_from_args(args)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-transfer", description="Transfer learning for Keras 3."
    )
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
    ft.add_argument("--blocks", default=None, help="'all', 'first', 'middle', 'last' or block names.")
    ft.add_argument("--validation-split", type=float, default=0.2)
    ft.add_argument("--export", default=None, help="Where to write the SavedModel.")
    ft.add_argument("--save", default=None, help="Where to write the .keras file.")
    ft.add_argument("--seed", type=int, default=0)
    ft.set_defaults(func=_finetune)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    from keras_transfer.utils.network import OfflineError

    try:
        args.func(args)
    except (ValueError, OfflineError) as error:
        print(f"keras-transfer: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
