"""A real Prometheus scrapes a running operator, gateway and encoder during a short CVAT-like load; afterwards every
Grafana panel's query, evaluated through Prometheus' HTTP API, returns data, and `promtool check metrics`
accepts each component's /metrics.

The operator reconciles a SamModel on the real API server (kwok makes its two pods Ready); one pod is annotated
with the address of a real `sam-inference serve` (tiny random checkpoint, CPU), the other with a dead port, so
the gateway's routing shows primaries, retries and upstream errors. Prometheus (Debian's binary) runs on loopback
with scrape_interval 1s and the chart's rendered alert rules loaded.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import missing_tool
from harness.cluster import Cluster, wait_for
from harness.cvat import CvatClient, interactor_payload, synthetic_image
from harness.helm import CHART, write_rules
from harness.operator import RunningOperator, sammodel
from harness.processes import VENV_BIN, ManagedProcess, free_port, http_get
from harness.sam import wait_condition

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ANNOTATION = "samoperator.io/test-address"
RATE_INTERVAL = "1m"
# Metrics that exist only in some environments: GPU memory is exported only where CUDA exists.
CUDA_ONLY = {"sam_inference_gpu_memory_bytes"}


def tools() -> tuple[str, str]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not (prometheus and promtool):
        missing_tool("prometheus/promtool missing (apt-get install prometheus; hack/setup.sh does it)")
    return prometheus, promtool


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}), timeout=10)
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


def panel_queries() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((CHART / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = (
                    target["expr"]
                    .replace("$__rate_interval", RATE_INTERVAL)
                    .replace("$namespace", ".*")
                    .replace("$service", ".*")
                    .replace("$function", ".*")
                )
                out.append((path.stem, panel["title"], expr))
    return out


def promtool_check_metrics(promtool: str, url: str) -> None:
    status, body = http_get(url)
    assert status == 200
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert proc.returncode == 0, (url, proc.stdout.decode() + proc.stderr.decode())


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_tiny.pth"
    subprocess.run(
        [str(VENV_BIN / "sam-inference"), "make-tiny", "--output", str(path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    yield started
    for proc in reversed(started):
        proc.stop()


def test_every_dashboard_panel_has_data_in_a_real_prometheus(
    cluster: Cluster, namespace: str, tmp_path: Path, tiny_checkpoint: Path, processes: list[ManagedProcess]
) -> None:
    prometheus_bin, promtool = tools()
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds" / "sammodels.yaml"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/sammodels.samoperator.io", "--timeout=60s")

    # ---- the three processes
    operator = RunningOperator(cluster, tmp_path).start()
    try:
        assert operator.proc is not None
        processes.append(operator.proc)
        encoder_port = free_port()
        encoder = ManagedProcess(
            "encoder",
            [str(VENV_BIN / "sam-inference"), "serve"],
            {
                "SAM_INFERENCE_HOST": "127.0.0.1",
                "SAM_INFERENCE_PORT": str(encoder_port),
                "SAM_INFERENCE_MODEL_VARIANT": "vit_tiny",
                "SAM_INFERENCE_CHECKPOINT_PATH": str(tiny_checkpoint),
                "SAM_INFERENCE_DEVICE": "cpu",
                "SAM_INFERENCE_MAX_QUEUE": "2",
                "SAM_INFERENCE_MAX_BATCH_SIZE": "2",
            },
            tmp_path,
        ).start()
        processes.append(encoder)
        gateway_port = free_port()
        gateway = ManagedProcess(
            "gateway",
            [str(VENV_BIN / "sam-gateway")],
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "SAM_GATEWAY_HOST": "127.0.0.1",
                "SAM_GATEWAY_PORT": str(gateway_port),
                "SAM_GATEWAY_DIRECT_ENABLED": "false",
                "SAM_GATEWAY_NAMESPACES": namespace,
                "SAM_GATEWAY_POD_ADDRESS_ANNOTATION": ANNOTATION,
            },
            tmp_path,
        ).start()
        processes.append(gateway)
        gateway.wait_http(f"http://127.0.0.1:{gateway_port}/readyz", timeout=60)
        encoder.wait_http(f"http://127.0.0.1:{encoder_port}/readyz", timeout=240)

        service = "sam-observed"  # naming.child_name: the encoder Service of SamModel "observed"
        # ---- Prometheus from the start (the SamModel's first reconciles are scraped), every second, with the
        # chart's alert rules loaded
        rules = write_rules(tmp_path)
        prom_port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                # job names as prometheus-operator derives them from the chart's Services (release "rel")
                {
                    "job_name": "rel-sam-operator-metrics",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{operator.metrics_port}"],
                            "labels": {"namespace": namespace, "pod": "rel-sam-operator-0"},
                        }
                    ],
                },
                {
                    "job_name": "rel-sam-operator-gateway",
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{gateway_port}"],
                            "labels": {"namespace": namespace, "pod": "rel-sam-operator-gateway-0"},
                        }
                    ],
                },
                {
                    "job_name": service,
                    "static_configs": [
                        {
                            "targets": [f"127.0.0.1:{encoder_port}"],
                            "labels": {"namespace": namespace, "service": service, "pod": "live"},
                        }
                    ],
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = ManagedProcess(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            {},
            tmp_path,
        ).start()
        processes.append(prometheus)
        prom = f"http://127.0.0.1:{prom_port}"
        prometheus.wait_http(f"{prom}/-/ready", timeout=60)
        wait_for(lambda: len([r for r in query(prom, "up == 1")]) == 3, 30, what="all three targets up")

        cluster.apply(sammodel("observed", replicas=2), namespace)
        sam = wait_condition(cluster, namespace, "observed", "Ready", "True", timeout=90)
        function = sam["status"]["cvat"]["functionName"]
        assert sam["status"]["endpoint"].startswith(f"http://{service}.")
        pods = cluster.get_json("pods", "-n", namespace, "-l", sam["status"]["selector"])["items"]
        assert len(pods) == 2
        live_pod, dead_pod = (p["metadata"]["name"] for p in pods)
        cluster.kubectl("annotate", "pod", live_pod, "-n", namespace, f"{ANNOTATION}=127.0.0.1:{encoder_port}")
        cluster.kubectl("annotate", "pod", dead_pod, "-n", namespace, f"{ANNOTATION}=127.0.0.1:{free_port()}")

        # ---- a short CVAT-like load through the gateway
        cvat = CvatClient(gateway_port)
        assert function in cvat.list_functions()
        images = [synthetic_image(128, 96, seed=i)[0] for i in range(6)]
        codes: list[int] = []
        for _ in range(3):  # CVAT resends the image with every click: cache hits after the first
            for image in images:
                codes.append(cvat.invoke_dashboard(function, interactor_payload(image, [[10.0, 10.0]]))[0])

        def burst(seed: int) -> None:
            payload = interactor_payload(synthetic_image(128, 96, seed=100 + seed)[0], [[5.0, 5.0]])
            codes.append(cvat.invoke_dashboard(function, payload)[0])

        threads = [threading.Thread(target=burst, args=(i,)) for i in range(8)]  # may overflow the queue: 429
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        codes.append(cvat.invoke_dashboard(function, {"image": "not base64!"})[0])  # encoder 400
        codes.append(cvat.invoke_dashboard("no-such-function", {"image": ""})[0])  # gateway 404
        assert codes.count(200) >= 18, codes
        # Any change of a SamModel runs a reconcile (level-based); poke it so the last minute holds reconciles.
        cluster.kubectl("annotate", "sammodel", "observed", "-n", namespace, "samoperator.io/poked=1")
        time.sleep(4)  # a few more scrapes after the load

        # ---- every panel's query has data
        missing: list[str] = []
        encoder_metrics = http_get(f"http://127.0.0.1:{encoder_port}/metrics")[1].decode()
        has_cuda_samples = "\nsam_inference_gpu_memory_bytes{" in encoder_metrics
        for dashboard, title, expr in panel_queries():
            has_data = finite(query(prom, expr))
            cuda_only = any(m in expr for m in CUDA_ONLY) and not has_cuda_samples
            if not has_data and not cuda_only:
                missing.append(f"{dashboard} / {title}: {expr}")
        assert not missing, "panels without data:\n" + "\n".join(missing)

        # ---- the alert rules evaluate without errors on real data
        def rule_health() -> dict[str, str]:
            groups = json.loads(http_get(f"{prom}/api/v1/rules")[1])["data"]["groups"]
            return {r["name"]: r["health"] for g in groups for r in g["rules"]}

        wait_for(
            lambda: len(rule_health()) >= 10 and set(rule_health().values()) == {"ok"},
            10,
            what="every alert rule evaluated without error",
        )

        # ---- promtool accepts each component's exposition
        promtool_check_metrics(promtool, f"http://127.0.0.1:{operator.metrics_port}/metrics")
        promtool_check_metrics(promtool, f"http://127.0.0.1:{gateway_port}/metrics")
        promtool_check_metrics(promtool, f"http://127.0.0.1:{encoder_port}/metrics")
    finally:
        operator.stop()
