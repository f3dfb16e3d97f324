# shellcheck shell=bash
# Shared by tests/check.sh and data_scripts/build_book.sh: source it from the repository root,
# do not execute it. It only defines functions; nothing runs on `source`.

# Use the active virtual environment if there is one; otherwise use .venv, creating it
# (with python3.11 when available, else python3) if it does not exist yet.
cir_use_venv() {
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        echo "Using the active virtual environment: $VIRTUAL_ENV"
        return 0
    fi
    if [ ! -e .venv ]; then
        local py
        py=$(command -v python3.11 || command -v python3) || {
            echo "Neither python3.11 nor python3 is on PATH: cannot create .venv" >&2
            return 1
        }
        echo "Creating .venv with $py ($("$py" --version 2>&1))"
        "$py" -m venv .venv
    fi
    if [ ! -f .venv/bin/activate ]; then
        echo ".venv exists but is not a virtual environment: remove it and run again" >&2
        return 1
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
    echo "Using $VIRTUAL_ENV"
}

# Install the pinned requirements (which end with `-e .`, i.e. cirlib itself) and register the
# environment's interpreter as the `python3` kernel that papermill and nbval start.
cir_install() {
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    python -m pip install --progress-bar off -r requirements.txt
    python -m ipykernel install --sys-prefix --name python3
}
