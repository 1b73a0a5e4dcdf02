#!/usr/bin/env bash
# Fetch, from PyPI, the wheels the GPU machine lacks for bench/gpu_check.py (docs/gpu.md), into git-ignored folders.
#
# The machine (one H200, Python 3.12, no network) has torch 2.11, transformers 5.17, tokenizers 0.23.2,
# huggingface_hub 1.x, peft, accelerate and sentence-transformers 6.0, but no datasets, trl, evaluate or
# bitsandbytes. Our lower bounds (pyproject.toml) need huggingface_hub >= 2 (and its httpx2 client),
# transformers >= 5.18, tokenizers >= 0.23.3 and sentence-transformers >= 6.2, so those travel too, each at the
# version requirements/lock.txt pins (the tested set, inside pyproject's ranges), with the few small packages
# whose floors they raise (regex for transformers' import-time check, jinja2 for chat templates, fsspec for
# datasets' cap, click and hf-xet for huggingface_hub). Everything is fetched with --no-deps from an explicit
# list: one version of each, nothing else.
#
# What travels in one device call (the working tree plus carried folders) is at most 64 MiB, checked here.
# bitsandbytes (43 MB: one library per CUDA version) does not fit beside the main set, so it is a second folder
# for an optional second call on the same, still warm, machine.
#
#   bench/gpu_wheels.sh          # -> bench/_wheels/      (required: 18 wheels, 25.8 MiB on 2026-11-30)
#   bench/gpu_wheels.sh --bnb    # -> bench/_wheels_bnb/  (bitsandbytes only, 41.1 MiB: QLoRA and 8-bit Adam)
#
# On the GPU machine, from the repository's root with bench/_wheels/ copied beside the working tree (it is
# ignored by git, so name it among the paths to bring), the one command (about 3-4 minutes; allow 9):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target bench/_site bench/_wheels/*.whl && export PYTHONPATH=$PWD/bench/_site:$PWD PYTHONUNBUFFERED=1 && python3 bench/gpu_check.py --device cuda
#
# It writes $OUT/gpu_check.json (or bench/_work/gpu_check.json) and prints the table. The optional second command,
# right after it on the same machine (bench/_wheels_bnb/ brought along; bench/_site/ is still there):
#
#   test -d bench/_site/transformers || { echo "bench/_site is gone: run the first command again"; exit 3; }; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target bench/_site bench/_wheels_bnb/*.whl && export PYTHONPATH=$PWD/bench/_site:$PWD PYTHONUNBUFFERED=1 && python3 bench/gpu_check.py --device cuda --only train_qlora train_adam8bit
set -euo pipefail
cd "$(dirname "$0")/.."

LIMIT_MIB=64
REQUIRED=(transformers tokenizers huggingface_hub hf-xet httpx2 httpcore2 truststore click datasets dill multiprocess
          fsspec trl peft sentence-transformers evaluate regex jinja2)
BNB=("bitsandbytes==0.50.2")  # not in the lock (no GPU here): the release with a CUDA 13 library
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}

if [ "${1:-}" = "--bnb" ]; then
    DEST=bench/_wheels_bnb
    SPECS=("${BNB[@]}")
elif [ -z "${1:-}" ]; then
    DEST=bench/_wheels
    SPECS=()
    for name in "${REQUIRED[@]}"; do  # the lock's pin, matched like pip does (case, - _ .)
        pin=$(grep -iE "^${name//[-_.]/[-_.]}==" requirements/lock.txt || true)
        [ -n "$pin" ] || { echo "no pin for $name in requirements/lock.txt" >&2; exit 1; }
        SPECS+=("$pin")
    done
else
    echo "usage: bench/gpu_wheels.sh [--bnb]" >&2
    exit 2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --isolated: this machine's pip configuration (extra indexes, local wheel folders) is not used; PyPI only.
"$PY" -m pip --isolated download -q --no-deps --only-binary=:all: --index-url https://pypi.org/simple \
    --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$tmp" "${SPECS[@]}"
rm -rf "$DEST"
mkdir -p "$DEST"
mv "$tmp"/*.whl "$DEST"/

wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
total=$((wheels + tree))
ls -l "$DEST"
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "$DEST: ${#SPECS[@]} wheels, $(mib "$wheels"); working tree $(mib "$tree"); one call carries $(mib "$total") of ${LIMIT_MIB} MiB"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
    echo "over the ${LIMIT_MIB} MiB a device call may carry" >&2
    exit 1
fi
