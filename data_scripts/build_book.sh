#!/usr/bin/env bash
# Build the book:
#
#     bash data_scripts/build_book.sh          # toy profile: what the published book shows
#     bash data_scripts/build_book.sh smoke    # the small CI profile, a few minutes
#     bash data_scripts/build_book.sh paper    # real datasets on a CUDA GPU
#
# Uses the active virtual environment, else .venv (created if absent); installs the pinned
# requirements and the python3 kernel; executes every chapter of _toc.yml with papermill into
# _build/stage; builds the HTML into _build/site with warnings as errors.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile="${1:-toy}"
case "$profile" in
smoke | toy | paper) ;;
*) echo "usage: bash data_scripts/build_book.sh [smoke|toy|paper]" >&2 && exit 2 ;;
esac

# No progress bars (tqdm writes to stderr, which fails the -W build), no display, stable hashing.
export TQDM_DISABLE="${TQDM_DISABLE:-1}" MPLBACKEND="${MPLBACKEND:-Agg}"
export PYTHONHASHSEED="${PYTHONHASHSEED:-0}"
if [ "$profile" != paper ]; then
    # smoke and toy need nothing from the network; paper may fetch pretrained weights.
    export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" CIRLIB_OFFLINE="${CIRLIB_OFFLINE:-1}"
fi

start=$SECONDS
# shellcheck source=tests/_venv.sh
source tests/_venv.sh
cir_use_venv
cir_install

echo "==== executing the chapters (profile $profile)"
python tests/notebooks/run_notebooks.py --profile "$profile" --stage _build/stage

echo "==== building the HTML"
rm -rf _build/site
jb build _build/stage --path-output _build/site -W -n --keep-going

echo
echo "Built in $((SECONDS - start)) s. Open: $(pwd)/_build/site/_build/html/index.html"
