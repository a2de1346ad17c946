#!/usr/bin/env bash
# CI leg: `pip install` of this package onto an environment that has `tensorflow-cpu`.
# Requiring `tensorflow` by name there made pip add `tensorflow` 2.21 on top of tensorflow-cpu 2.20:
# `pip check` silent, `import tensorflow` failing with an undefined symbol. setup.py now names the
# distribution already installed; this leg checks that on a real install, then runs a small subset.
# Usage: .ci/tensorflow_cpu.sh [SOURCE_DIR]  (default: this checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
source .ci/lib.sh
src=$(realpath "${1:-.}")

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
"$(find_python 3.12)" -m venv "$root/venv"   # Python 3.12 as on Kaggle: constraints/kaggle.txt is for 3.12
venv=$root/venv
"$venv/bin/pip" install --quiet -c constraints/kaggle.txt tensorflow-cpu==2.20.0 keras   # the existing TF
"$venv/bin/pip" install --quiet -c constraints/kaggle.txt "$src[test]"                   # keras-transfer
check_tensorflow_kept "$venv" "tensorflow-cpu==2.20.0"
"$venv/bin/keras-transfer" --help > /dev/null
"$venv/bin/python" -m pytest -p no:cacheprovider -q tests/test_packaging.py tests/losses tests/layers/test_gradient_reversal.py
