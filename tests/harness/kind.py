"""The kind cluster whose pods are real containers (hack/kind-up.sh), and what tests do with real pods.

Nothing here plays kubelet: pods are run by the node's containerd, reached through the API server
(``kubectl port-forward``, ``exec``, ``logs``) as a user reaches them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.cluster import HACK, Cluster, k8s_bin_dir, wait_for

KIND_UP = HACK / "kind-up.sh"
KIND_DOWN = HACK / "kind-down.sh"
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


def kind_env(name: str, state: Path) -> dict[str, str]:
    return dict(os.environ, SAM_KIND_CLUSTER=name, SAM_KIND_STATE=str(state))


def start_kind_cluster(name: str, state: Path) -> Cluster:
    """hack/kind-up.sh (its progress lines and errors go to the terminal); the cluster it made.

    When it fails, the error names the cause on its first line (kind-up's last error lines), so that the one line
    pytest's summary keeps of it says why, not only that it failed.
    """
    proc = subprocess.Popen(
        ["bash", str(KIND_UP)], env=kind_env(name, state), stderr=subprocess.PIPE, text=True, errors="replace"
    )
    assert proc.stderr is not None
    errors: deque[str] = deque(maxlen=6)
    for line in proc.stderr:
        sys.stderr.write(line)
        if line.strip():
            errors.append(line.strip())
    returncode = proc.wait(timeout=3600)
    if returncode != 0:
        stop_kind_cluster(name, state)
        cause = " | ".join(errors) or "no error output"
        raise RuntimeError(f"hack/kind-up.sh failed ({returncode}): {cause}; logs in {state}/logs")
    return Cluster(kubeconfig=state / "kubeconfig", bin_dir=k8s_bin_dir())


def stop_kind_cluster(name: str, state: Path) -> None:
    subprocess.run(["bash", str(KIND_DOWN)], env=kind_env(name, state), timeout=600)


@contextmanager
def port_forward(cluster: Cluster, namespace: str, target: str, *ports: int) -> Iterator[dict[int, int]]:
    """``kubectl port-forward target :port...``: {remote port: local 127.0.0.1 port} while the block runs."""
    proc = subprocess.Popen(
        [
            cluster.kubectl_path,
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            namespace,
            "port-forward",
            "--address",
            "127.0.0.1",
            target,
            *[f":{p}" for p in ports],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    mapping: dict[int, int] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while len(mapping) < len(ports):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError(f"port-forward {target} {ports} did not start: {''.join(lines)}")
            lines.append(line)
            match = _FORWARDING.search(line)
            if match:
                mapping[int(match.group(2))] = int(match.group(1))
        yield mapping
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pods(
    cluster: Cluster, namespace: str, selector: str, count: int, timeout: float = 300
) -> list[dict[str, Any]]:
    """Wait until exactly ``count`` pods match and all are Ready; return them."""

    def check() -> list[dict[str, Any]] | None:
        found = pods(cluster, namespace, selector)
        ok = len(found) == count and all(is_ready(p) for p in found)
        return found if ok else None

    try:
        result: list[dict[str, Any]] = wait_for(check, timeout, interval=1)
    except AssertionError:
        raise AssertionError(
            f"{count} ready pods ({selector}) not reached: {describe(pods(cluster, namespace, selector))}"
        ) from None
    return result


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def describe(found: list[dict[str, Any]]) -> str:
    return json.dumps(
        [
            {
                "name": p["metadata"]["name"],
                "phase": p["status"].get("phase"),
                "init": p["status"].get("initContainerStatuses"),
                "containers": p["status"].get("containerStatuses"),
            }
            for p in found
        ],
        default=str,
    )[:4000]


def container_status(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    (status,) = [s for s in pod["status"].get(key) or [] if s["name"] == name]
    return dict(status)


def exec_in(
    cluster: Cluster, namespace: str, pod: str, container: str, *command: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("exec", "-n", namespace, pod, "-c", container, "--", *command, check=check)


def logs(cluster: Cluster, namespace: str, pod: str, container: str, previous: bool = False) -> str:
    args = ["logs", "-n", namespace, pod, "-c", container] + (["--previous"] if previous else [])
    return cluster.kubectl(*args).stdout


def node_exec(cluster_name: str, *command: str) -> subprocess.CompletedProcess[str]:
    """A command on the kind node itself (its container), as an operator of the machine would run it."""
    env = dict(os.environ, CONTAINERS_CONF=str(HACK / "kind" / "containers.conf"))
    return subprocess.run(
        ["podman", "exec", f"{cluster_name}-control-plane", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
