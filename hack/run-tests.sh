#!/usr/bin/env bash
# Runs the whole test suite (unit, contract, integration on the real local cluster, end to end),
# then checks that no process this run started is still running. Extra args go to pytest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Every process the tests start inherits this marker, so the leftover check below finds exactly this run's
# processes (and not those of a demo or another test run on the same machine).
SAM_TEST_RUN_ID="run-$$-$(date +%s%N)"
export SAM_TEST_RUN_ID
.venv/bin/python -m pytest "$@"
rc=$?
if [[ $rc == 5 ]]; then echo "pytest collected no tests" >&2; rc=1; fi
sleep 1
leftovers=""
for env_file in /proc/[0-9]*/environ; do
  pid=${env_file#/proc/}; pid=${pid%/environ}
  [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
  if { tr '\0' '\n' <"$env_file"; } 2>/dev/null | grep -qx "SAM_TEST_RUN_ID=$SAM_TEST_RUN_ID"; then
    leftovers+="$pid $(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null)"$'\n'
  fi
done
if [[ -n $leftovers ]]; then
  echo "processes left running after the tests:" >&2; echo "$leftovers" >&2; rc=1
else
  echo "no test processes left running"
fi
exit $rc
