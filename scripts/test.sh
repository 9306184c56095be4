#!/usr/bin/env bash
# The test command: the serial suite, then the MPI suite on 2 ranks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
py="$root/.venv/bin/python"
mpirun="$root/.venv/bin/mpirun"

echo "== serial suite (1 rank) =="
"$py" -m pytest tests "$@"

echo "== MPI suite (2 ranks; rank 1's report goes to \$TMPDIR) =="
log="${TMPDIR:-/tmp}/transport-pytest-rank1.log"
status=0
PYTEST_RANK_LOG="$log" "$mpirun" -n 2 "$py" -m pytest tests -m "not serial" "$@" || status=$?
if [ "$status" -ne 0 ]; then
    echo "== rank 1 report ==" && cat "$log"
fi
exit "$status"
