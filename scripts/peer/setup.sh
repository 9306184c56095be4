#!/usr/bin/env bash
# Create the neural-ODE peer's venv (Python 3.11 + torch CPU + torchdiffeq), if not done already.
#
#     scripts/peer/setup.sh [VENV_DIR]      # default VENV_DIR: <repo>/.venv-peer
#
# The last line of stdout is the venv's python, so a caller can do
#     py="$(scripts/peer/setup.sh | tail -n 1)"
#
# torch has no wheel for the project's Python 3.12 here: this machine kind carries a CPU build of
# torch 2.13.0 for Python 3.11 on disk, which pip's configuration finds. Asked for on
# PyPI instead, torch==2.13.0 is a CUDA build (a 527 MB wheel) that pulls 18 nvidia-*, cuda-* and
# triton packages (GBs), and without them it does not import even on the CPU (libcudnn.so.9
# missing), so `--no-deps` is no way out. Before installing anything the script checks, with a
# dry run that reads metadata only, that pip would take a '+cpu' build, and stops otherwise
# unless PEER_ALLOW_CUDA_TORCH=1.
#
# Set PEER_PYTHON=/path/to/python3.11 to choose the interpreter the venv is made with (its one
# meaning: the tools find the venv's python through this script, scripts.harness.peer_python,
# never through PEER_PYTHON). Idempotent: a stamp keyed on the
# pins skips pip entirely on a second call.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${1:-$root/.venv-peer}"
pins=(torch==2.13.0 torchdiffeq==0.2.5 numpy==2.4.6 scipy==1.17.1)  # scipy: torchdiffeq needs it

suitable() {  # is $1 a Python 3.11 that runs?
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' >/dev/null 2>&1
}

find_python() {
    local candidate
    # A pyenv shim on PATH fails unless 3.11 is selected: `suitable` rejects it, and the globs
    # below find pyenv's own copy.
    for candidate in "${PEER_PYTHON:-}" python3.11 /root/.pyenv/versions/3.11*/bin/python3.11 \
        "$HOME"/.pyenv/versions/3.11*/bin/python3.11; do
        if suitable "$candidate"; then echo "$candidate"; return; fi
    done
    return 1
}

log() { echo "peer-setup: $*" >&2; }

if [ -n "${PEER_PYTHON:-}" ] && ! suitable "$PEER_PYTHON"; then
    log "PEER_PYTHON=$PEER_PYTHON is not a working Python 3.11"
    exit 1
fi

py="$venv/bin/python"
stamp="$venv/.peer-installed-$(printf '%s\n' "${pins[@]}" | sha1sum | cut -c1-12)"
if suitable "$py" && [ -f "$stamp" ]; then
    echo "$py"
    exit 0
fi

if ! suitable "$py"; then
    python="$(find_python)" || {
        log "no Python 3.11 found (tried \$PEER_PYTHON, python3.11, ~/.pyenv/versions/3.11*);" \
            "install one or set PEER_PYTHON=/path/to/python3.11"
        exit 1
    }
    log "creating $venv with $python ($("$python" --version 2>&1))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    # Keep the venv out of git wherever it lies (what `python3.13 -m venv` does by itself).
    echo '*' >"$venv/.gitignore"
fi

pip=("$py" -m pip --disable-pip-version-check)

# Which torch would pip take? Only its metadata is read here, never the wheel.
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
"${pip[@]}" install --quiet --dry-run --no-deps --ignore-installed --report "$report" "${pins[0]}"
torch_version="$("$py" -c 'import json, sys
print(json.load(open(sys.argv[1]))["install"][0]["metadata"]["version"])' "$report")"
case "$torch_version" in
    *+cpu) ;;
    *)
        if [ "${PEER_ALLOW_CUDA_TORCH:-0}" != 1 ]; then
            log "pip would install torch $torch_version, a CUDA build with GBs of nvidia-* packages;" \
                "point pip at a CPU wheel (--find-links, PIP_FIND_LINKS) or set PEER_ALLOW_CUDA_TORCH=1"
            exit 1
        fi
        log "installing torch $torch_version (not a CPU build: PEER_ALLOW_CUDA_TORCH=1)"
        ;;
esac

log "installing ${pins[*]} into $venv"
"${pip[@]}" install --quiet "${pins[@]}"
"$py" -c 'import torch, torchdiffeq, numpy; torch.zeros(1, dtype=torch.float64).sum()'
rm -f "$venv"/.peer-installed-*
touch "$stamp"
echo "$py"
