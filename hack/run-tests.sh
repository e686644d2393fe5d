#!/usr/bin/env bash
# Runs the whole test suite (unit, contract, integration on the real local cluster, end to end),
# then checks that no process the tests started is still running. Extra args go to pytest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/python -m pytest "$@"
rc=$?
if [[ $rc == 5 ]]; then echo "pytest collected no tests" >&2; rc=1; fi
# Processes our fixtures start: the control plane (from the cached toolchain) and the inference/gateway/operator
# processes standing in for pods. Only those started under a pytest temp folder are ours.
leftovers=$(pgrep -af 'pytest-of-[^ ]*/.*(cluster|kubeconfig)|sam-inference serve|sam_operator.gateway|sam-gateway' \
  | grep -v -e pgrep -e run-tests || true)
if [[ -n $leftovers ]]; then
  echo "processes left running after the tests:" >&2; echo "$leftovers" >&2; rc=1
else
  echo "no test processes left running"
fi
exit $rc
