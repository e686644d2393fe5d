"""The kwok demo's (hack/demo.py) names, and its two helper commands: ``pods`` (the background process that runs
the SamModel's pod commands, as the e2e harness does) and ``down`` (stop everything a demo started)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path

from demo_lib import REPO, DemoPaths, Sample, alive, block, bold, info, moved, scrape, stop_all, write_pid

RELEASE, SYSTEM_NS, MODEL_NS, MODEL = "sam-operator", "sam-system", "sam-demo", "tiny-sam"
SELECTOR = f"app.kubernetes.io/component=encoder,app.kubernetes.io/instance={MODEL}"


def k8s_bin() -> Path:
    from harness.cluster import k8s_bin_dir

    return k8s_bin_dir()


def down(paths: DemoPaths) -> int:
    """Stop the processes, then uninstall (external cluster) or stop the demo's own control plane."""
    print(bold(f"==> Stopping what the demo started ({paths.root})"), flush=True)
    stopped = stop_all(paths)
    info(f"stopped: {', '.join(stopped) or 'no process was running'}")
    state = paths.read_state()
    if state.get("cluster") == "local" or (paths.cluster / "pids").exists():
        out = subprocess.run(
            ["bash", str(REPO / "hack" / "cluster-down.sh")],
            capture_output=True,
            text=True,
            env={**os.environ, "SAM_CLUSTER_DIR": str(paths.cluster)},
            timeout=180,
        )
        info(out.stdout.strip() or out.stderr.strip())
    elif state.get("cluster") == "external" and state.get("release"):
        bin_dir = k8s_bin()
        kcfg = ["--kubeconfig", state["kubeconfig"]]
        for argv in (
            [str(bin_dir / "kubectl"), *kcfg, "delete", "namespace", MODEL_NS, "--ignore-not-found"],
            [str(bin_dir / "helm"), *kcfg, "uninstall", state["release"], "-n", SYSTEM_NS],
            [str(bin_dir / "kubectl"), *kcfg, "delete", "namespace", SYSTEM_NS, "--ignore-not-found"],
        ):
            subprocess.run(argv, capture_output=True, timeout=180)
        info(f"uninstalled {state['release']}, deleted namespaces {MODEL_NS} and {SYSTEM_NS}")
    paths.state.unlink(missing_ok=True)
    return 0


def pods(kubeconfig: Path, paths: DemoPaths) -> int:
    """Background process: the e2e harness's PodRunner, with a status file and a pid file per pod process."""
    from harness.cluster import Cluster
    from harness.pods import PodRunner

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    status_file = paths.out("pods/status.json")
    status_file.parent.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(kubeconfig=kubeconfig, bin_dir=k8s_bin())
    with PodRunner(cluster, MODEL_NS, SELECTOR, paths.out("pods")) as runner:
        while not stop.wait(0.5):
            serving = {}
            for name, proc in list(runner.processes.items()):
                if proc.main and proc.main.proc and proc.main.running:
                    serving[name] = proc.address
                    if not (paths.pids / f"pod-{name}.pid").exists():
                        write_pid(paths, f"pod-{name}", proc.main.proc.pid, "sam-inference", order=20)
            status_file.write_text(json.dumps({"serving": serving, "errors": runner.errors[-5:]}))
    for pid_file in paths.pids.glob("pod-*.pid"):
        entry = json.loads(pid_file.read_text())
        if not alive(entry["pid"], entry["marker"]):
            pid_file.unlink(missing_ok=True)
    return 0


def show_moved(urls: dict[str, str], before: dict[str, dict[Sample, float]]) -> dict[str, list[str]]:
    """Scrape each ``/metrics`` URL and print the samples that moved since ``before`` (by name); return them."""
    result = {}
    for name, url in urls.items():
        lines = moved(before.get(name, {}), scrape(url))
        result[name] = lines
        info(bold(f"{name} ({url})"))
        block("\n".join(f"  {line}" for line in lines[:14]) or "  (nothing moved)")
        if len(lines) > 14:
            info(f"  … and {len(lines) - 14} more")
    return result
