"""`make demo`: sam-operator end to end on a local Kubernetes cluster, with CVAT's own requests.

    hack/demo.py         run the demo (DEMO_KEEP=1 leaves everything running; `hack/demo.py down` stops it)
    hack/demo.py down    stop everything a demo started (pid files under $DEMO_DIR, default .demo/)

Steps: start the demo's own control plane (unless $KUBECONFIG names a kwok-simulated cluster), `helm install`
the chart, run the operator and gateway with the env the chart rendered, serve a tiny checkpoint on 127.0.0.1,
apply a SamModel, run its pods' processes (kwok runs no containers: same harness as tests/e2e), call the gateway
exactly like CVAT, decode the mask like CVAT's browser plugin, save a PNG overlay, and show the metrics that moved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from demo_kwok import MODEL, MODEL_NS, RELEASE, SELECTOR, SYSTEM_NS, down, k8s_bin, pods, show_moved
from demo_lib import (
    REPO,
    VENV_BIN,
    DemoError,
    DemoPaths,
    block,
    bold,
    chart_install,
    deployment_container,
    info,
    live_pid_files,
    run,
    run_script,
    scrape,
    spawn,
    step,
    token_kubeconfig,
    wait,
    wait_http,
)

STEPS = 10
ADDRESS_ANNOTATION = "samoperator.io/test-address"
POS, NEG = [[160.0, 120.0]], [[60.0, 50.0]]  # a click on the image's shapes, and one on the background


class Demo:
    def __init__(self, paths: DemoPaths) -> None:
        self.paths = paths
        self.bin = k8s_bin()
        self.kubeconfig = Path()
        self.metrics_before: dict[str, Any] = {}
        self.ports: dict[str, int] = {}

    @property
    def kubectl(self) -> list[str]:
        return [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig)]

    @property
    def helm(self) -> list[str]:
        return [str(self.bin / "helm"), "--kubeconfig", str(self.kubeconfig)]

    # ------------------------------------------------------------------ 1 cluster
    def cluster(self) -> None:
        external = os.environ.get("KUBECONFIG")
        if external:
            step(1, STEPS, f"Using the cluster of $KUBECONFIG ({external})")
            self.kubeconfig = Path(external).resolve()
            self.paths.write_state(cluster="external", kubeconfig=str(self.kubeconfig))
            nodes = json.loads(run([*self.kubectl, "get", "nodes", "-o", "json"]))["items"]
            real = [
                n["metadata"]["name"]
                for n in nodes
                if (n["metadata"].get("annotations") or {}).get("kwok.x-k8s.io/node") != "fake"
            ]
            if real:
                raise DemoError(
                    f"nodes {real} are not kwok-simulated: the demo runs the pods' processes on this machine, which "
                    "only works with simulated nodes. Unset KUBECONFIG to use the demo's own local cluster, or "
                    "follow the README's quick start for a real cluster."
                )
        else:
            step(
                1,
                STEPS,
                "Starting a local Kubernetes control plane (etcd, kube-apiserver, controller-manager, "
                "scheduler, kwok nodes)",
            )
            self.kubeconfig = self.paths.cluster / "kubeconfig"
            self.paths.write_state(cluster="local", kubeconfig=str(self.kubeconfig))

            env = {**os.environ, "SAM_CLUSTER_DIR": str(self.paths.cluster)}
            for var in ("P_ETCD", "P_PEER", "P_API", "P_KCM", "P_SCHED"):
                env.pop(var, None)
            run_script("cluster-up.sh", env)
        block(
            run(
                [
                    *self.kubectl,
                    "get",
                    "nodes",
                    "-o",
                    "custom-columns=NODE:.metadata.name,"
                    "READY:.status.conditions[?(@.type=='Ready')].status,GPUS:.status.allocatable.nvidia\\.com/gpu,"
                    "GPU-MODEL:.metadata.labels.nvidia\\.com/gpu\\.product",
                ]
            )
        )

    # ------------------------------------------------------------------ 2 chart
    def chart(self) -> None:
        step(2, STEPS, f"helm install {RELEASE} charts/sam-operator -n {SYSTEM_NS}")
        self.paths.write_state(release=RELEASE, namespaces=[SYSTEM_NS, MODEL_NS])
        started = time.monotonic()
        out = run([*self.helm, *chart_install(RELEASE, SYSTEM_NS, timeout="180s", create_namespace=True)])
        info(
            f"installed in {time.monotonic() - started:.1f}s (CRD from the chart's crds/, RBAC, Deployments, "
            "Services, dashboards)"
        )
        notes = out.split("NOTES:", 1)[-1].strip().splitlines()
        block("\n".join(["NOTES (abridged):", *notes[:3]]))
        block(run([*self.kubectl, "get", "deployments,services", "-n", SYSTEM_NS]))
        info("kwok marks these pods Running but runs no containers, so the next step runs the same commands here.")

    # ------------------------------------------------------------------ 3 operator + gateway
    def control_processes(self) -> None:
        step(3, STEPS, "Running the operator and the gateway as local processes, with the env the chart rendered")
        from harness.processes import free_port

        for component, deployment in (("operator", RELEASE), ("gateway", f"{RELEASE}-gateway")):
            command, env = deployment_container(self.kubectl, SYSTEM_NS, deployment)
            sa_config = token_kubeconfig(
                self.kubectl, self.kubeconfig, SYSTEM_NS, deployment, self.paths.out(f"{component}.kubeconfig")
            )
            port, health = free_port(), free_port()
            if component == "operator":
                env.update(
                    SAM_OPERATOR_METRICS_HOST="127.0.0.1",
                    SAM_OPERATOR_METRICS_PORT=str(port),
                    SAM_OPERATOR_HEALTH_HOST="127.0.0.1",
                    SAM_OPERATOR_HEALTH_PORT=str(health),
                    KUBECONFIG=str(sa_config),
                )
                urls = (f"http://127.0.0.1:{health}/healthz", f"http://127.0.0.1:{port}/metrics")
            else:
                env.update(
                    SAM_GATEWAY_HOST="127.0.0.1",
                    SAM_GATEWAY_PORT=str(port),
                    SAM_GATEWAY_KUBECONFIG=str(sa_config),
                    KUBECONFIG=str(sa_config),
                    # kwok pods have no reachable IP: dial the address the pod harness annotates instead.
                    SAM_GATEWAY_POD_ADDRESS_ANNOTATION=ADDRESS_ANNOTATION,
                )
                urls = (f"http://127.0.0.1:{port}/readyz", f"http://127.0.0.1:{port}/metrics")
            proc = spawn(
                self.paths,
                component,
                [str(VENV_BIN / command[0]), *command[1:]],
                env,
                command[0],
                order=30 if component == "gateway" else 40,
            )
            wait_http(urls[0], component, proc, self.paths)
            self.ports[component] = port
            self.metrics_before[component] = scrape(urls[1])
            info(
                f"{component}: `{' '.join(command)}` as ServiceAccount {SYSTEM_NS}/{deployment}, "
                f"{len(env)} env vars from the Deployment, listening on 127.0.0.1 (log: {self.paths.logs}/"
                f"{component}.log)"
            )
        info(f"CVAT would use: CVAT_NUCLIO_HOST=127.0.0.1 CVAT_NUCLIO_PORT={self.ports['gateway']}")

    # ------------------------------------------------------------------ 4 checkpoint
    def checkpoint(self) -> tuple[str, str]:
        step(4, STEPS, "Serving a tiny SAM checkpoint on 127.0.0.1 (real checkpoints can't be downloaded here)")
        from harness.processes import free_port
        from sam_inference.torch_models.tiny import write_tiny_checkpoint

        folder = self.paths.out("checkpoints")
        folder.mkdir(exist_ok=True)
        sha = write_tiny_checkpoint(folder / "sam_vit_tiny.pth")
        port = free_port()
        proc = spawn(
            self.paths,
            "checkpoint-server",
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
            {},
            "http.server",
            50,
        )
        url = f"http://127.0.0.1:{port}/sam_vit_tiny.pth"
        wait_http(url, "checkpoint-server", proc, self.paths)
        size = (folder / "sam_vit_tiny.pth").stat().st_size
        info(f"{url}  ({size / 1e6:.1f} MB, sha256 {sha[:16]}…; a randomly initialised ViT, real SAM code)")
        return url, sha

    # ------------------------------------------------------------------ 5 SamModel
    def sammodel(self, url: str, sha: str) -> None:
        step(5, STEPS, f"kubectl apply a SamModel in namespace {MODEL_NS}")
        run(
            [*self.kubectl, "apply", "-f", "-"],
            input=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": MODEL_NS, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
                }
            ),
        )
        manifest = f"""\
# With internet, point the checkpoint at the official weights instead (crds/samples/sammodel-gpu.yaml):
#   url: https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth
#   sha256: a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e
apiVersion: samoperator.io/v1alpha1
kind: SamModel
metadata:
  name: {MODEL}
  namespace: {MODEL_NS}
spec:
  model:
    variant: vit_tiny
    checkpoint:
      url: {url}
      sha256: {sha}
  runtime:
    device: cpu
    precision: float32  # the reference path: the saved mask equals the PyTorch model's (tests/demo checks it)
  resources:
    gpus: 0
  replicas: 1
  cvat:
    mode: embedding
    displayName: Segment Anything (demo)
"""
        self.paths.out("sammodel.yaml").write_text(manifest)
        block(manifest)
        block(run([*self.kubectl, "apply", "-f", str(self.paths.out("sammodel.yaml"))]))

    # ------------------------------------------------------------------ 6 pods
    def pods(self) -> str:
        step(6, STEPS, "Running the encoder pods' processes (init containers fetch + export-decoder, then serve)")
        status_file = self.paths.out("pods/status.json")
        runner = spawn(
            self.paths,
            "pod-runner",
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "pods",
                "--kubeconfig",
                str(self.kubeconfig),
                "--dir",
                str(self.paths.root),
            ],
            {},
            "demo.py",
            order=10,
        )
        from harness.cvat import CvatClient

        def check() -> tuple[bool, str]:
            pods = json.loads(run([*self.kubectl, "get", "pods", "-n", MODEL_NS, "-l", SELECTOR, "-o", "json"]))
            if runner.poll() is not None:
                raise DemoError(f"the pod runner exited; see {self.paths.logs}/pod-runner.log")
            states, served_all = [], bool(pods["items"])
            for pod in pods["items"]:
                served = (pod["metadata"].get("annotations") or {}).get(ADDRESS_ANNOTATION)
                served_all = served_all and bool(served)
                states.append(
                    f"{pod['metadata']['name']} {pod['status'].get('phase')}"
                    + (f", serving at {served}" if served else ", starting its processes")
                )
            sam = json.loads(run([*self.kubectl, "get", "sam", MODEL, "-n", MODEL_NS, "-o", "json"]))
            ready = next((c for c in sam.get("status", {}).get("conditions") or [] if c["type"] == "Ready"), {})
            errors = json.loads(status_file.read_text()).get("errors", []) if status_file.exists() else []
            if errors:
                raise DemoError("pod processes failed: " + errors[-1])
            function = (sam.get("status", {}).get("cvat") or {}).get("functionName", "")
            listed = bool(function) and function in CvatClient(self.ports["gateway"]).list_functions()
            text = f"Ready={ready.get('status', '?')} ({ready.get('reason', '-')}); " + ("; ".join(states) or "no pod")
            # kwok reports pods Ready at once; the demo waits for their processes too (the address annotation).
            text += "; listed by the gateway" if listed else ""
            return ready.get("status") == "True" and listed and served_all, text

        wait("SamModel Ready, pods served, function listed", check, timeout=300, interval=1)
        block(run([*self.kubectl, "get", "sam,deployments,pods,services", "-n", MODEL_NS]))
        sam = json.loads(run([*self.kubectl, "get", "sam", MODEL, "-n", MODEL_NS, "-o", "json"]))
        for warning in sam["status"]["cvat"].get("warnings") or []:
            info(f"status.cvat.warnings: {warning}")
        self.metrics_before["encoder"] = scrape(f"http://{self.encoder_address()}/metrics")
        return str(sam["status"]["cvat"]["functionName"])

    def encoder_address(self) -> str:
        pods = json.loads(run([*self.kubectl, "get", "pods", "-n", MODEL_NS, "-l", SELECTOR, "-o", "json"]))
        return str(
            next(
                p["metadata"]["annotations"][ADDRESS_ANNOTATION]
                for p in pods["items"]
                if ADDRESS_ANNOTATION in (p["metadata"].get("annotations") or {})
            )
        )

    # ------------------------------------------------------------------ 7-8 CVAT
    def cvat(self, function: str) -> tuple[Any, Any, bytes]:
        from demo_cvat import image, invoke

        step(7, STEPS, "CVAT's calls to the gateway: list the functions, then one interactor click")
        png, rgb = image(self.paths)
        blob = invoke(self.ports["gateway"], function, png, rgb, POS, NEG)
        return png, rgb, blob

    def decode(self, function: str, rgb: Any, blob: bytes) -> dict[str, Any]:
        from demo_cvat import decode_like_the_browser, save_outputs

        step(8, STEPS, "Decoding the mask like CVAT's browser plugin (onnxruntime, the decoder the encoder exported)")
        mask, box = decode_like_the_browser(self.encoder_address(), rgb, blob, POS, NEG)
        return save_outputs(self.paths, function, rgb, blob, mask, box, POS, NEG)

    # ------------------------------------------------------------------ 9 metrics
    def metrics(self) -> dict[str, list[str]]:
        step(9, STEPS, "Metrics that moved (Prometheus /metrics of the gateway, the encoder and the operator)")
        urls = {
            "gateway": f"http://127.0.0.1:{self.ports['gateway']}/metrics",
            "encoder": f"http://{self.encoder_address()}/metrics",
            "operator": f"http://127.0.0.1:{self.ports['operator']}/metrics",
        }
        return show_moved(urls, self.metrics_before)


def up(paths: DemoPaths, keep: bool) -> int:
    if live_pid_files(paths):
        print(f"a demo is already running (pid files in {paths.pids}): run `make demo-down` first", file=sys.stderr)
        return 1
    paths.make()
    for stale in ("state.json", "result.json", "mask.png", "mask-overlay.png", "image.png"):
        paths.out(stale).unlink(missing_ok=True)
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    demo = Demo(paths)
    started = time.monotonic()
    ok = False
    try:
        demo.cluster()
        demo.chart()
        demo.control_processes()
        url, sha = demo.checkpoint()
        demo.sammodel(url, sha)
        function = demo.pods()
        _, rgb, blob = demo.cvat(function)
        result = demo.decode(function, rgb, blob)
        result["metrics_moved"] = demo.metrics()
        paths.out("result.json").write_text(json.dumps(result, indent=2))
        ok = True
    except DemoError as exc:
        print(f"\n{bold('demo failed:')} {exc}\n    logs: {paths.logs}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    except Exception:
        traceback.print_exc()
    finally:
        step(10, STEPS, "Done" if ok else "Stopped")
        info(
            f"{time.monotonic() - started:.0f}s; outputs in {paths.root}: mask-overlay.png, mask.png, image.png, "
            "result.json, logs/"
        )
        if keep:
            info(f"DEMO_KEEP=1: everything is still running. export KUBECONFIG={demo.kubeconfig}")
            if "gateway" in demo.ports:
                info(f"  curl -s http://127.0.0.1:{demo.ports['gateway']}/api/functions   # what CVAT lists")
            info("  kubectl get sam -A; make demo-down   # stops it all")
        else:
            down(paths)
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="up", choices=["up", "down", "pods"])
    parser.add_argument("--kubeconfig", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = DemoPaths((args.dir or Path(os.environ.get("DEMO_DIR") or REPO / ".demo")).resolve())
    if args.command == "down":
        return down(paths)
    if args.command == "pods":
        return pods(args.kubeconfig, paths)
    return up(paths, keep=os.environ.get("DEMO_KEEP", "") not in ("", "0"))


if __name__ == "__main__":
    sys.exit(main())
