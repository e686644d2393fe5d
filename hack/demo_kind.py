"""`make demo` on a machine that runs containers: sam-operator end to end on kind, every pod a real container.

    hack/demo_kind.py         run the demo (DEMO_KEEP=1 leaves the cluster running; `hack/demo_kind.py down` stops it)
    hack/demo_kind.py down    delete the demo's kind cluster (hack/kind-down.sh)

Steps: create a kind cluster offline (node image, product images built here, loaded into the node), `helm install`
the chart (operator and gateway as pods, Pod Security `restricted`), serve a tiny checkpoint from a pod, apply a
SamModel and watch its encoder pods fetch, export and load, call the gateway exactly like CVAT through
`kubectl port-forward`, decode the mask like CVAT's browser plugin, save a PNG overlay, show the metrics that
moved, and say where the time went.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from demo_cvat import decode_like_the_browser, image, invoke, save_outputs
from demo_lib import (
    REPO,
    DemoError,
    DemoPaths,
    block,
    bold,
    chart_install,
    info,
    moved,
    run,
    run_script,
    scrape,
    step,
    wait,
)
from harness.cluster import k8s_bin_dir
from harness.kind import port_forward

STEPS = 8
CLUSTER = os.environ.get("SAM_KIND_CLUSTER", "sam-demo")
RELEASE, SYSTEM_NS, MODEL_NS, MODEL = "sam-operator", "sam-system", "sam-demo", "tiny-sam"
SELECTOR = f"app.kubernetes.io/component=encoder,app.kubernetes.io/instance={MODEL}"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
CLICKS_POS, CLICKS_NEG = [[160.0, 120.0]], [[60.0, 50.0]]


class Cluster:
    """kubectl against the demo's kind cluster (port-forwards go through harness.kind, as in the tests)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_path = str(k8s_bin_dir() / "kubectl")

    def k(self, *args: str, input: str | None = None) -> str:
        return run([self.kubectl_path, "--kubeconfig", str(self.kubeconfig), *args], input=input)

    def json(self, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.k("get", *args, "-o", "json"))
        return result


def kind_env(paths: DemoPaths) -> dict[str, str]:
    return {**os.environ, "SAM_KIND_CLUSTER": CLUSTER, "SAM_KIND_STATE": str(paths.root / "kind")}


def create_cluster(paths: DemoPaths) -> Path:
    step(1, STEPS, f"kind cluster {CLUSTER}: node image and product images built here, loaded into the node")
    run_script("kind-up.sh", kind_env(paths))
    return paths.root / "kind" / "kubeconfig"


def namespace(cluster: Cluster, name: str) -> None:
    cluster.k(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}),
    )


def install_chart(cluster: Cluster) -> None:
    step(2, STEPS, f"helm install {RELEASE} charts/sam-operator -n {SYSTEM_NS} (restricted Pod Security)")
    namespace(cluster, SYSTEM_NS)
    helm = [str(k8s_bin_dir() / "helm"), "--kubeconfig", str(cluster.kubeconfig)]
    pull_never = ("image.pullPolicy=Never", "operator.encoderImage.pullPolicy=Never")
    run([*helm, *chart_install(RELEASE, SYSTEM_NS, *pull_never, timeout="300s")])
    block(cluster.k("get", "pods", "-n", SYSTEM_NS, "-o", "wide"))


def serve_checkpoint(cluster: Cluster, paths: DemoPaths, version: str) -> tuple[str, str]:
    step(3, STEPS, "A pod serving a tiny SAM checkpoint (real checkpoints can't be downloaded here)")
    namespace(cluster, MODEL_NS)
    manifest = (
        (REPO / "hack" / "kind" / "checkpoint-server.yaml")
        .read_text()
        .replace("ENCODER_IMAGE", f"ghcr.io/sam-operator/sam-inference:{version}")
    )
    cluster.k("apply", "-n", MODEL_NS, "-f", "-", input=manifest)
    cluster.k("rollout", "status", "-n", MODEL_NS, "deploy/checkpoints", "--timeout=300s")
    with (
        port_forward(cluster, MODEL_NS, "svc/checkpoints", 8000) as ports,
        urllib.request.urlopen(  # type: ignore[arg-type]
            f"http://127.0.0.1:{ports[8000]}/sam_vit_tiny.pth", timeout=60
        ) as response,
    ):
        data = response.read()
    paths.out("checkpoints").mkdir(exist_ok=True)
    paths.out("checkpoints/sam_vit_tiny.pth").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    url = f"http://checkpoints.{MODEL_NS}.svc.cluster.local:8000/sam_vit_tiny.pth"
    info(f"{url}: {len(data) / 1e6:.1f} MB, sha256 {sha[:16]}…")
    return url, sha


def apply_model(cluster: Cluster, url: str, sha: str) -> dict[str, Any]:
    step(4, STEPS, f"kubectl apply SamModel {MODEL_NS}/{MODEL}: its pod fetches, exports the decoder, loads")
    sam = {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": {"name": MODEL},
        "spec": {
            "model": {"variant": "vit_tiny", "checkpoint": {"url": url, "sha256": sha}},
            "runtime": {"device": "cpu", "maxBatchSize": 2},
            "resources": {"gpus": 0, "requests": {"cpu": "100m", "memory": "256Mi"}},
            "replicas": 1,
            "cvat": {"mode": "embedding", "displayName": "Tiny SAM (demo)"},
        },
    }
    cluster.k("apply", "-n", MODEL_NS, "-f", "-", input=json.dumps(sam))

    def ready() -> tuple[bool, str]:  # wait() prints each new reason with the time it appeared
        body = cluster.json("sammodel", MODEL, "-n", MODEL_NS)
        conditions = {c["type"]: c for c in body.get("status", {}).get("conditions") or []}
        return conditions.get("Ready", {}).get("status") == "True", conditions.get("Ready", {}).get("reason", "")

    wait("the SamModel to be Ready", ready, timeout=600)
    block(cluster.k("get", "sammodel", "-n", MODEL_NS))
    pod: dict[str, Any] = cluster.json("pods", "-n", MODEL_NS, "-l", SELECTOR)["items"][0]
    for init in pod["status"]["initContainerStatuses"]:
        state = init["state"]["terminated"]
        last_line = cluster.k("logs", "-n", MODEL_NS, pod["metadata"]["name"], "-c", init["name"]).strip()
        info(
            f"init container {init['name']}: {state['reason']} (exit {state['exitCode']}): "
            f"{last_line.splitlines()[-1] if last_line else ''}"
        )
    return pod


def call_like_cvat(cluster: Cluster, paths: DemoPaths, pod: dict[str, Any]) -> dict[str, Any]:
    step(5, STEPS, "CVAT's calls through the gateway's Service (kubectl port-forward: 8070 and the direct port)")
    png, rgb = image(paths)
    function = cluster.json("sammodel", MODEL, "-n", MODEL_NS)["status"]["cvat"]
    gateway = f"svc/{RELEASE}-gateway"
    name = pod["metadata"]["name"]
    with (
        port_forward(cluster, SYSTEM_NS, gateway, 8070) as gw,
        port_forward(  # type: ignore[arg-type]
            cluster, MODEL_NS, f"pod/{name}", 8080
        ) as encoder,
    ):
        before = scrape(f"http://127.0.0.1:{encoder[8080]}/metrics")
        forward = subprocess.Popen(  # CVAT's direct mode dials the advertised port itself: forward it 1:1
            [
                cluster.kubectl_path,
                "--kubeconfig",
                str(cluster.kubeconfig),
                "-n",
                SYSTEM_NS,
                "port-forward",
                "--address",
                "127.0.0.1",
                gateway,
                f"{function['httpPort']}:{function['httpPort']}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(2)
            blob = invoke(gw[8070], function["functionName"], png, rgb, CLICKS_POS, CLICKS_NEG)
        finally:
            forward.terminate()
            forward.wait(10)
        step(6, STEPS, "Decoding the mask like CVAT's browser plugin (the decoder the init container exported)")
        mask, box = decode_like_the_browser(f"127.0.0.1:{encoder[8080]}", rgb, blob, CLICKS_POS, CLICKS_NEG)
        result = save_outputs(paths, function["functionName"], rgb, blob, mask, box, CLICKS_POS, CLICKS_NEG)
        step(7, STEPS, "Encoder metrics that moved (its /metrics, port-forwarded)")
        after = scrape(f"http://127.0.0.1:{encoder[8080]}/metrics")
    block("\n".join(moved(before, after)[:12]))
    return result


def main() -> int:
    paths = DemoPaths(Path(os.environ.get("DEMO_DIR") or REPO / ".demo").resolve())
    paths.make()
    if sys.argv[1:] == ["down"]:
        return subprocess.run(["bash", str(REPO / "hack" / "kind-down.sh")], env=kind_env(paths)).returncode
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    times: dict[str, float] = {}
    ok = False
    try:
        started = time.monotonic()
        cluster = Cluster(create_cluster(paths))
        times["kind cluster (images, node image, create, load)"] = time.monotonic() - started
        t0 = time.monotonic()
        install_chart(cluster)
        times["helm install (operator and gateway pods)"] = time.monotonic() - t0
        t0 = time.monotonic()
        url, sha = serve_checkpoint(cluster, paths, version)
        times["checkpoint server pod"] = time.monotonic() - t0
        t0 = time.monotonic()
        pod = apply_model(cluster, url, sha)
        times["SamModel → Ready (fetch, export, load)"] = time.monotonic() - t0
        t0 = time.monotonic()
        result = call_like_cvat(cluster, paths, pod)
        times["CVAT calls, decode, metrics"] = time.monotonic() - t0
        paths.out("result.json").write_text(json.dumps(result, indent=2))
        ok = True
    except DemoError as err:
        info(bold(f"demo failed: {err}"))
    finally:
        step(8, STEPS, "Where the time went" if ok else "Stopped")
        block("\n".join(f"{seconds:7.1f}s  {label}" for label, seconds in times.items()))
        if os.environ.get("DEMO_KEEP") == "1" and ok:
            info(
                f"left running (DEMO_KEEP=1): export KUBECONFIG={paths.root / 'kind' / 'kubeconfig'}; "
                "stop with make demo-down"
            )
        else:
            subprocess.run(["bash", str(REPO / "hack" / "kind-down.sh")], env=kind_env(paths), check=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
