#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, learning tests included. Extra args go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
# pytest exits 5 when no test was collected: that is a failure of the suite, not a pass
[ "$rc" -eq 5 ] && echo "no tests were collected" >&2
exit "$rc"
