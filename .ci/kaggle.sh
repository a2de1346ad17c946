#!/usr/bin/env bash
# CI leg: the Kaggle image's versions: Python 3.12, TensorFlow 2.20, Keras 3.13.2,
# the rest as constraints/kaggle.txt records it. Installed the way a Kaggle user does: the image's
# TensorFlow and Keras first, then this package on top; TensorFlow must stay as it was.
# Test subset: the library's own tests (models, layers, recipes, ops, losses, data, distribution, docstrings,
# packaging). Left to the README leg, which runs them on the newest releases: tests/benchmarks,
# tests/demos, tests/reliability, tests/serving and the multi-worker runner test (quick benchmarks, fault
# and resume runs, fresh-process exports, worker processes; a Kaggle kernel is one machine), the README
# blocks and examples (they call the same public API the library tests cover), the CLI, and the lint and
# code-structure checks (independent of the installed versions); so that all CI legs stay under 30
# minutes on 2 cores.
# Extra arguments go to pytest (e.g. --durations=30).
set -euo pipefail
# Test fixtures (.keras files) are saved with the oldest Keras supported, this leg's 3.13.2: newer
# Keras writes config keys older Keras refuses.
cd "$(dirname "$0")/.."
source .ci/lib.sh

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
"$(find_python 3.12)" -m venv "$root/venv"
venv=$root/venv
"$venv/bin/pip" install --quiet -c constraints/kaggle.txt tensorflow keras     # what the image has
"$venv/bin/pip" install --quiet -c constraints/kaggle.txt ".[test]"           # the user's install
check_tensorflow_kept "$venv" "tensorflow==2.20.0"
"$venv/bin/python" -m pytest -p no:cacheprovider -q tests \
    --ignore=tests/benchmarks --ignore=tests/demos --ignore=tests/reliability --ignore=tests/serving \
    --ignore=tests/distribute/test_multi_worker.py --ignore=tests/test_readme.py --ignore=tests/test_examples.py \
    --ignore=tests/test_cli.py --ignore=tests/test_lint.py --ignore=tests/test_code_structure.py "$@"
