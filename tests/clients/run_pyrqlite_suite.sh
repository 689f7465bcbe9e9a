#!/usr/bin/env bash
# Runs pyrqlite's own test suite (vendored unchanged in tests/clients/pyrqlite_suite) against
# Shoal. The suite starts a fresh server per test class through pyrqlite's EphemeralRqlited,
# which runs `$RQLITED_PATH` (default: `rqlited` on PATH); here that is the tests/clients/rqlited
# shim, which execs `shoal serve`. Exits non-zero on any failure or error.
#
# Usage: tests/clients/run_pyrqlite_suite.sh [pytest args]
# Env:   SHOAL_BIN            shoal binary (default: target/debug/shoal)
#        RQLITED_SHIM_LOG     file collecting the servers' logs (default: a temporary file,
#                             kept and named on failure)
#        PYRQLITE_TIMEOUT     per-test timeout in seconds (default: 300), a backstop: pyrqlite
#                             waits for /readyz forever (pyrqlite_harness.py turns a server
#                             that exited into an error, not one that runs but is never ready)
# Needs: pip install -r tests/clients/requirements.txt (pyrqlite, pytest, pytest-timeout)
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

export SHOAL_BIN="${SHOAL_BIN:-$root/target/debug/shoal}"
if [[ ! -x $SHOAL_BIN ]]; then
  echo "run_pyrqlite_suite.sh: no shoal binary at $SHOAL_BIN (cargo build first)" >&2
  exit 2
fi
if ! python3 -c 'import pyrqlite, pytest, pytest_timeout' 2>/dev/null; then
  echo "run_pyrqlite_suite.sh: needs pip install -r tests/clients/requirements.txt" >&2
  exit 2
fi

# The suite runs `rqlited` from PATH unless RQLITED_PATH names it; point both at the shim.
export PATH="$here:$PATH"
export RQLITED_PATH="$here/rqlited"
export PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"  # for -p pyrqlite_harness

# Every server the shim starts leaves its process id here; whatever is still running at the
# end (a server that never became ready is never stopped by the suite) is killed.
pid_dir="$(mktemp -d)"
export RQLITED_SHIM_PID_DIR="$pid_dir"
own_log=0
if [[ -z ${RQLITED_SHIM_LOG:-} ]]; then
  export RQLITED_SHIM_LOG="$pid_dir.servers.log"
  own_log=1
fi
cleanup() {
  for f in "$pid_dir"/*; do
    [[ -e $f ]] || continue
    pid="${f##*/}"
    if kill -0 "$pid" 2>/dev/null && grep -qa shoal "/proc/$pid/cmdline" 2>/dev/null; then
      echo "run_pyrqlite_suite.sh: killing leftover server $pid" >&2
      kill "$pid" 2>/dev/null
      for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
  done
  rm -rf "$pid_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --tb=native: pytest's own traceback rendering parses source with ast and hit CPython 3.11.7's
# "AST constructor recursion depth mismatch" SystemError (INTERNALERROR) on these errors.
# One test is deselected, with its reason: pyrqlite marks it expectedFailure (pyrqlite#17)
# because rqlite answers a BLOB from an expression column with its raw bytes as text; Shoal
# answers base64 with type "blob", as for every BLOB, which is what the test asks for, so it
# "unexpectedly passes" (docs/rqlite-compat.md, BLOB values). Deselected with -k: --deselect
# needs node ids relative to the rootdir, which differ by how pytest is invoked.
python3 -m pytest -v -rfEX --tb=native -p no:cacheprovider -p pyrqlite_harness \
  -k "not (BinaryConverterTests and test_CheckBinaryInputForConverter)" \
  --rootdir "$here/pyrqlite_suite" \
  --timeout "${PYRQLITE_TIMEOUT:-300}" \
  "$here/pyrqlite_suite" "$@"
status=$?
if ((status != 0)); then
  echo "run_pyrqlite_suite.sh: FAILED (pytest exit $status); server logs: $RQLITED_SHIM_LOG" >&2
elif ((own_log)); then
  rm -f "$RQLITED_SHIM_LOG"
fi
exit "$status"
