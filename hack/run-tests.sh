#!/usr/bin/env bash
# Runs the whole test suite (unit, contract, integration on the local kwok cluster, end to end, and the real-pods
# suite on a kind cluster it creates), then checks that this run left nothing behind: no process it started, and
# no container, podman network, kind cluster or host sysctl that differs from before. Extra args go to pytest.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=hack/kind/lib.sh
source hack/kind/lib.sh
# Every process the tests start inherits this marker, so the leftover check below finds exactly this run's
# processes (and not those of a demo or another test run on the same machine).
SAM_TEST_RUN_ID="run-$$-$(date +%s%N)"
export SAM_TEST_RUN_ID

host_state() { # what a kind run may leave behind on the host, one line per thing
  if command -v podman >/dev/null; then
    podman ps -a --format 'container {{.Names}}' 2>/dev/null | sort
    podman network ls --format 'network {{.Name}}' 2>/dev/null | sort
  fi
  [[ -x $SAM_K8S_BIN/kind ]] && "$SAM_K8S_BIN/kind" get clusters 2>/dev/null | sed 's/^/kind-cluster /'
  for s in $(kind_host_sysctls); do printf 'sysctl %s=%s\n' "$s" "$(sysctl -n "$s" 2>/dev/null)"; done
  [[ -e /lib/modules ]] && echo "path /lib/modules"
  return 0
}
before=$(host_state)
# The kind suite loads ~6.5 GB of images into its node, which stores them twice: say early how much room there is
# (kind-up.sh refuses, with the figures, before creating a cluster that cannot hold them).
if command -v podman >/dev/null; then echo "disk: $(numfmt --to=iec "$(store_free_bytes)") free for podman's store"; fi

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
after=$(host_state)
if [[ $before != "$after" ]]; then
  echo "the host differs from before the tests (containers, podman networks, kind clusters, sysctls):" >&2
  diff <(echo "$before") <(echo "$after") >&2; rc=1
else
  echo "no container, podman network, kind cluster or sysctl change left behind"
fi
exit $rc
