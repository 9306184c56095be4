#!/usr/bin/env bash
# Create .venv (Python >= 3.12) and install the project into it, if not done already.
#
# Idempotent: a stamp keyed on pyproject.toml skips the install when nothing changed.
# Set PYTHON=/path/to/python3.12 to choose the interpreter.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

suitable() {  # is $1 a Python >= 3.12 that runs?
    [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
    local candidate version
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3; do
        if suitable "$candidate"; then echo "$candidate"; return; fi
    done
    # pyenv installs versions under $(pyenv root)/versions, off PATH unless one is selected.
    if command -v pyenv >/dev/null 2>&1; then
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])(\.|$)' | sort -rV); do
            candidate="$(pyenv root)/versions/$version/bin/python"
            if suitable "$candidate"; then echo "$candidate"; return; fi
        done
    fi
    for candidate in /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9]; do
        if suitable "$candidate"; then echo "$candidate"; return; fi
    done
    return 1
}

if [ -n "${PYTHON:-}" ] && ! suitable "$PYTHON"; then
    echo "bootstrap: PYTHON=$PYTHON is not a working Python >= 3.12" >&2
    exit 1
fi

if ! suitable "$venv/bin/python"; then
    python="$(find_python)" || {
        echo "bootstrap: no Python >= 3.12 found (tried \$PYTHON, python3.13, python3.12, python3, pyenv);" \
             "install one or set PYTHON=/path/to/python3.12" >&2
        exit 1
    }
    echo "bootstrap: creating $venv with $python ($("$python" --version 2>&1))"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

stamp="$venv/.installed-$(cat "$root/pyproject.toml" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing the project and its dependencies into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[test]"
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
