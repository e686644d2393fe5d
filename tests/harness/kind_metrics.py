"""The autoscaling tests' metrics stack on kind: a real Prometheus scraping the encoder pods, the chart's
prometheus-adapter serving the HPA's Pods metrics, and what the tests read back (HPA state, events, gateway
metrics). Used by tests/kind/test_autoscaling_on_kind.py."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from harness.cluster import HACK, Cluster, wait_for
from harness.kind import node_exec, port_forward, ready_pods
from harness.kind_release import Kind, Release, encoder_image, restricted_namespace, upgrade_release


def report(line: str) -> None:
    print(f"[autoscaling] {line}", flush=True)


def build_and_load_metrics_images(kind: Kind) -> dict[str, str]:
    """hack/kind/build-metrics-images.sh, then each image into the node (never pulled)."""
    env = dict(os.environ, SAM_KIND_CLUSTER=kind.name)
    out = subprocess.run(
        ["bash", str(HACK / "kind" / "build-metrics-images.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    ).stdout
    images = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and line.isascii())
    for image in images.values():
        subprocess.run(["bash", str(HACK / "kind" / "load-image.sh"), image], env=env, check=True, timeout=600)
    return images


@dataclass
class Metrics:
    prometheus_namespace: str
    prometheus_url: str


@contextlib.contextmanager
def running_metrics_stack(kind: Kind, release: Release) -> Iterator[Metrics]:
    """Prometheus (hack/kind/prometheus.yaml) and the chart's prometheus-adapter, until the block ends; the
    custom metrics APIService Available (or the adapter's own answers reported, and the block never entered)."""
    cluster = kind.cluster
    images = build_and_load_metrics_images(kind)
    namespace = restricted_namespace(cluster, "monitoring")
    text = (HACK / "kind" / "prometheus.yaml").read_text()
    operator_image = encoder_image().replace("sam-inference", "sam-operator")  # its Python runs the discovery
    for placeholder, value in (
        ("PROMETHEUS_IMAGE", images["PROMETHEUS_IMAGE"]),
        ("PROMETHEUS_NAMESPACE", namespace),
        ("OPERATOR_IMAGE", operator_image),
    ):
        text = text.replace(placeholder, value)
    cluster.apply(text, namespace)
    ready_pods(cluster, namespace, "app=prometheus", 1, timeout=180)
    url = f"http://prometheus.{namespace}.svc:9090"
    repository, tag = images["ADAPTER_IMAGE"].rsplit(":", 1)
    # The chart's adapter (its rules are what the HPA reads), and a gateway that checks for idle models often.
    upgrade_release(
        cluster,
        release.namespace,
        "--set",
        "prometheusAdapter.deploy.enabled=true",
        "--set",
        f"prometheusAdapter.deploy.image.repository={repository}",
        "--set",
        f"prometheusAdapter.deploy.image.tag={tag}",
        "--set",
        "prometheusAdapter.deploy.image.pullPolicy=Never",
        "--set",
        f"prometheusAdapter.deploy.prometheusUrl={url}",
        "--set",
        "prometheusAdapter.deploy.metricsRelistInterval=10s",
        "--set",
        "gateway.scaleToZero.intervalSeconds=2",
    )
    try:
        wait_for(
            lambda: condition_of(cluster.get_json("apiservice", APISERVICE), "Available") == "True",
            timeout=180,
            interval=2,
            what="the custom metrics APIService Available",
        )
    except AssertionError:
        report_adapter(kind, release.namespace)
        raise
    # Another upgrade keeps the serving certificate (a new CA in the caBundle before the pod had the new cert
    # would make the aggregator refuse the adapter): the caBundle is unchanged and the APIService stays Available.
    ca_bundle = cluster.get_json("apiservice", APISERVICE)["spec"]["caBundle"]
    upgrade_release(cluster, release.namespace)
    after = cluster.get_json("apiservice", APISERVICE)
    assert after["spec"]["caBundle"] == ca_bundle
    assert condition_of(after, "Available") == "True", after.get("status")
    yield Metrics(namespace, url)
    cluster.kubectl("delete", "clusterrolebinding,clusterrole", "sam-test-prometheus", check=False)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


APISERVICE = "v1beta1.custom.metrics.k8s.io"


def report_adapter(kind: Kind, namespace: str) -> None:
    """Why the aggregator does not call the adapter Available: its conditions, the adapter pod, its log, where the
    Service's address leads on the node."""
    cluster = kind.cluster
    apiservice = cluster.get_json("apiservice", APISERVICE)
    report(f"APIService {APISERVICE} conditions: {json.dumps((apiservice.get('status') or {}).get('conditions'))}")
    selector = "app.kubernetes.io/component=prometheus-adapter"
    adapter_pods = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]  # terminating ones too
    for pod in adapter_pods:
        statuses = pod["status"].get("containerStatuses") or []
        report(
            f"adapter pod {pod['metadata']['name']} (IP {pod['status'].get('podIP')}, deleted "
            f"{pod['metadata'].get('deletionTimestamp')}): {json.dumps(statuses)[:600]}"
        )
    logs = cluster.kubectl("logs", "-n", namespace, "-l", selector, "--tail", "40", check=False)
    report(f"adapter log: {(logs.stdout + logs.stderr)[-3000:]}")
    service = str(apiservice["spec"]["service"]["name"])
    report_service_routing(kind, namespace, service)
    # What the adapter itself answers, through the API server's service proxy, and the rules file it was given.
    proxy = f"/api/v1/namespaces/{namespace}/services/https:{service}:443/proxy"
    for path in ("/apis", "/apis/custom.metrics.k8s.io/v1beta1"):
        answer = cluster.kubectl("get", "--raw", proxy + path, check=False)
        report(f"adapter GET {path}: rc {answer.returncode} {(answer.stdout + answer.stderr)[:800]}")
    config = cluster.kubectl("get", "configmap", "-n", namespace, "-l", selector, "-o", "json", check=False)
    report(f"adapter rules ConfigMap: {config.stdout[:1500] or config.stderr}")


def report_service_routing(kind: Kind, namespace: str, service: str) -> None:
    """Where the aggregator's discovery check goes. It dials the Service's endpoints from the node
    (`--enable-aggregator-routing`, hack/kind/cluster.yaml); a connection that leaves the node meets this machine's
    network, which answers any HTTPS request with a 404 of its own (the "bad status ... 404" of a
    FailedDiscoveryCheck, which the adapter itself never answers there). Reported: the Service's endpoints (to read
    against the adapter pods' IPs that `report_adapter` prints), the node's NAT rules naming the cluster IP or an
    endpoint, the node's route to each endpoint, and the node's kube-proxy log."""
    cluster = kind.cluster
    cluster_ip = str(cluster.get_json("service", "-n", namespace, service)["spec"]["clusterIP"])
    slices = cluster.get_json("endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}")
    endpoints = [endpoint for item in slices["items"] for endpoint in item.get("endpoints") or []]
    addresses = sorted({address for endpoint in endpoints for address in endpoint.get("addresses") or []})
    described = [
        (endpoint.get("addresses"), endpoint.get("conditions"), (endpoint.get("targetRef") or {}).get("name"))
        for endpoint in endpoints
    ]
    report(f"Service {service} ({cluster_ip}) endpoints: {json.dumps(described)}")
    for command in (
        ("iptables-save", "-t", "nat"),
        ("nft", "list", "ruleset"),
        *(("ip", "route", "get", a) for a in addresses),
    ):
        try:
            out = node_exec(kind.name, *command).stdout
        except (OSError, subprocess.SubprocessError) as error:
            report(f"node {' '.join(command)}: {error}")
            continue
        named = [line.strip() for line in out.splitlines() if any(a in line for a in (cluster_ip, *addresses))]
        report(f"node {' '.join(command)}: {named[:8]}")
    # The kube-proxy on the real node (the DaemonSet's pods on the kwok GPU nodes have no log).
    on_node = cluster.get_json(
        "pods", "-n", "kube-system", "-l", "k8s-app=kube-proxy", "--field-selector", f"spec.nodeName={kind.node}"
    )["items"]
    for pod in on_node:
        name = pod["metadata"]["name"]
        restarts = [status.get("restartCount") for status in pod["status"].get("containerStatuses") or []]
        proxy_log = cluster.kubectl("logs", "-n", "kube-system", name, "--tail", "30", check=False)
        report(f"kube-proxy {name} (restarts {restarts}) log: {(proxy_log.stdout + proxy_log.stderr)[-2500:]}")


def condition_of(body: dict[str, Any], type_: str, field_: str = "status") -> str | None:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get(field_))
    return None


def hpa(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(cluster.get_json("hpa", f"sam-{name}", "-n", namespace))


def hpa_events(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str]]:
    return [
        (e.reason or "", e.message or "")
        for e in cluster.events(namespace, f"sam-{name}")
        if e.involved_object.kind == "HorizontalPodAutoscaler"
    ]


def model_events(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str, str]]:
    return [
        (e.reason or "", e.message or "", (e.source.component if e.source else "") or "")
        for e in cluster.events(namespace, name)
        if e.involved_object.kind == "SamModel"
    ]


def gateway_metric(kind: Kind, release: Release, name: str, **labels: str) -> float:
    target = f"svc/{release.gateway_service}"
    with (
        port_forward(kind.cluster, release.namespace, target, 8070) as ports,
        urllib.request.urlopen(f"http://127.0.0.1:{ports[8070]}/metrics", timeout=30) as response,
    ):
        text = response.read().decode()
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
