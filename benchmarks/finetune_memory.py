"""Peak resident memory of the default linear probe as the number of images grows.

Each measurement runs in a fresh Python process: build a `mobilenet_v2` classifier
(`weights=None`, no download), then run `recipes.linear_probe(model, x, y)` (the
default convex probe of `fine_tune` and `keras-transfer finetune`) on N random
images, and read the process's peak RSS (`resource.getrusage().ru_maxrss`). The
RSS right after building the model is reported too, so the probe's own cost is
`peak - built`. With streaming, compiled feature extraction the peak is flat in N;
the eager extraction it replaced grew by ~87 MiB per image at 224 px.

    python benchmarks/finetune_memory.py [--quick] [--image-size 224] [--images 64 256]
"""

import os
import sys

# `python benchmarks/x.py` from anywhere runs this checkout, not an installed keras_transfer.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import json
import subprocess

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from keras_transfer import recipes

n, size, backbone, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
model = recipes.build_classifier(backbone, 5, (size, size, 3), weights=None, dropout=0)
rng = np.random.default_rng(0)
x = rng.uniform(0, 255, size=(n, size, size, 3)).astype("float32")
y = np.arange(n) % 5
built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
if mode == "probe":
    recipes.linear_probe(model, x, y, C=1.0)
else:
    recipes.extract_features(model, x, use_cache=False)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"built_mib": built, "peak_mib": peak, "seconds": seconds}))
"""


def measure(n, image_size, backbone="mobilenet_v2", mode="probe"):
    """Runs one measurement in a fresh process; returns its dict (MiB, seconds)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(image_size), backbone, mode],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="96 px, 16 and 64 images")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--mode", choices=("probe", "extract"), default="probe")
    args = parser.parse_args(argv)
    size, counts = (96, [16, 64]) if args.quick else (args.image_size, args.images)
    print(f"{args.backbone}, {size} px, {args.mode}: one fresh process per row")
    print(f"{'images':>7} {'built MiB':>10} {'peak MiB':>9} {'probe MiB':>10} {'seconds':>8}")
    for n in counts:
        r = measure(n, size, args.backbone, args.mode)
        print(
            f"{n:>7} {r['built_mib']:>10.0f} {r['peak_mib']:>9.0f} {r['peak_mib'] - r['built_mib']:>10.0f} "
            f"{r['seconds']:>8.1f}"
        )


if __name__ == "__main__":
    main()
