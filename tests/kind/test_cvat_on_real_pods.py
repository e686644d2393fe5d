"""CVAT ↔ gateway pod ↔ encoder pods on kind: every container here was run by the node's kubelet and containerd.

The assertions lean on what only a kubelet produces: init containers' terminated states and logs, probe-gated
readiness, restart counts, `kubectl exec` into the running encoder.
"""

from __future__ import annotations

import base64
import urllib.request
from typing import Any

import numpy as np
import pytest
from harness.cvat import CvatClient, decode_cvat_rle, interactor_payload, synthetic_image
from harness.kind import container_status, exec_in, logs, pods, port_forward
from harness.kind_release import Checkpoint, Kind, Model, Release
from harness.reference import assert_blob_decodes_to_the_pytorch_mask
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.kind]


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        data: bytes = response.read()
    return data


def metric(port: int, name: str) -> float:
    body = fetch(f"http://127.0.0.1:{port}/metrics").decode()
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples if s.name == name)


def test_encoder_pods_ran_their_init_containers_then_passed_their_probes(kind: Kind, embedding_model: Model) -> None:
    found = pods(kind.cluster, embedding_model.namespace, embedding_model.selector)
    assert len(found) == 2
    for pod in found:
        name = pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == kind.node  # the real node, not a kwok one
        for init in ("fetch-checkpoint", "export-decoder"):
            terminated = container_status(pod, init, init=True)["state"]["terminated"]
            assert (terminated["reason"], terminated["exitCode"]) == ("Completed", 0), terminated
        fetched = logs(kind.cluster, embedding_model.namespace, name, "fetch-checkpoint")
        assert "sha256" in fetched.lower(), fetched
        exported = logs(kind.cluster, embedding_model.namespace, name, "export-decoder")
        assert "decoder" in exported.lower(), exported
        encoder = container_status(pod, "encoder")
        assert "running" in encoder["state"] and encoder["started"] and encoder["ready"], encoder
        assert encoder["restartCount"] == 0
        assert encoder["containerID"].startswith("containerd://")
        assert encoder["imageID"]  # resolved by containerd from the pre-loaded image


def test_the_encoder_runs_as_10001_on_a_read_only_root(kind: Kind, embedding_model: Model) -> None:
    pod = pods(kind.cluster, embedding_model.namespace, embedding_model.selector)[0]["metadata"]["name"]
    ns = embedding_model.namespace
    assert exec_in(kind.cluster, ns, pod, "encoder", "id", "-u").stdout.strip() == "10001"
    refused = exec_in(kind.cluster, ns, pod, "encoder", "touch", "/not-allowed", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused
    assert exec_in(kind.cluster, ns, pod, "encoder", "touch", "/models/.writable", "/tmp/.writable").returncode == 0
    status = exec_in(kind.cluster, ns, pod, "encoder", "cat", "/proc/1/status").stdout
    cap_eff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    assert int(cap_eff, 16) == 0  # no capabilities
    assert "NoNewPrivs:\t1" in status


def test_the_gateway_lists_the_function_for_cvat(gateway_port: int, embedding_model: Model) -> None:
    functions = CvatClient(gateway_port).list_functions()
    fn = functions[embedding_model.function]
    assert fn["metadata"]["annotations"]["type"] == "interactor"
    assert isinstance(fn["status"]["httpPort"], int)


def test_dashboard_blob_decoded_with_the_pods_decoder_matches_pytorch(
    kind: Kind, gateway_port: int, embedding_model: Model, checkpoint: Checkpoint
) -> None:
    png, rgb = synthetic_image(seed=1)
    pos, neg = [[160.0, 120.0]], [[60.0, 50.0]]
    status, _, body = CvatClient(gateway_port).invoke_dashboard(
        embedding_model.function, interactor_payload(png, pos=pos, neg=neg)
    )
    assert status == 200, body
    embedding = np.frombuffer(base64.b64decode(body["blob"]), dtype="<f4").reshape(1, 256, 64, 64)
    pod = pods(kind.cluster, embedding_model.namespace, embedding_model.selector)[0]["metadata"]["name"]
    with port_forward(kind.cluster, embedding_model.namespace, f"pod/{pod}", 8080) as ports:
        decoder_bytes = fetch(f"http://127.0.0.1:{ports[8080]}/v1/decoder.onnx")
    # PyTorch on this machine, from the bytes the in-cluster server served; the pod's torch may differ in the
    # last bits from this venv's, hence a looser embedding tolerance than the e2e suite's.
    assert_blob_decodes_to_the_pytorch_mask(
        embedding, decoder_bytes, rgb, pos, neg, checkpoint.path, embedding_tolerance=1e-3
    )


def test_direct_mode_port_is_reachable_from_outside_the_cluster(
    kind: Kind, release: Release, gateway_port: int, embedding_model: Model
) -> None:
    port = CvatClient(gateway_port).list_functions()[embedding_model.function]["status"]["httpPort"]
    png, _ = synthetic_image(seed=2)
    with port_forward(kind.cluster, release.namespace, f"svc/{release.gateway_service}", port) as ports:
        status, _, body = CvatClient.invoke_direct(ports[port], interactor_payload(png, pos=[[10.0, 10.0]]))
    assert status == 200, body
    assert len(base64.b64decode(body["blob"])) == 4_194_304


def test_masks_mode_returns_rle_shapes_that_decode(gateway_port: int, masks_model: Model) -> None:
    png, rgb = synthetic_image(seed=3)
    status, _, body = CvatClient(gateway_port).invoke_dashboard(
        masks_model.function, interactor_payload(png, pos=[[160.0, 120.0]], bbox=[[100.0, 60.0], [220.0, 180.0]])
    )
    assert status == 200, body
    (shape,) = body["shapes"]
    assert shape["type"] == "mask"
    mask, (xtl, ytl, xbr, ybr) = decode_cvat_rle(shape["points"])
    assert 0 <= xtl <= xbr < rgb.shape[1] and 0 <= ytl <= ybr < rgb.shape[0]
    assert mask.any()


def _cache_counters(port: int) -> tuple[float, float]:
    return metric(port, "sam_inference_cache_hits_total"), metric(port, "sam_inference_cache_misses_total")


def test_the_same_frame_lands_on_the_same_replicas_cache(kind: Kind, gateway_port: int, embedding_model: Model) -> None:
    found = pods(kind.cluster, embedding_model.namespace, embedding_model.selector)
    names = [p["metadata"]["name"] for p in found]
    assert len(names) == 2
    with (
        port_forward(kind.cluster, embedding_model.namespace, f"pod/{names[0]}", 8080) as first_pod,
        port_forward(kind.cluster, embedding_model.namespace, f"pod/{names[1]}", 8080) as second_pod,
    ):
        metric_ports = {names[0]: first_pod[8080], names[1]: second_pod[8080]}
        before = {n: _cache_counters(p) for n, p in metric_ports.items()}
        png, _ = synthetic_image(seed=4)
        client = CvatClient(gateway_port)
        first = client.invoke_dashboard(embedding_model.function, interactor_payload(png, [[5, 5]]))
        second = client.invoke_dashboard(embedding_model.function, interactor_payload(png, [[90, 40]]))
        after = {n: _cache_counters(p) for n, p in metric_ports.items()}
    assert first[0] == second[0] == 200
    assert first[2]["blob"] == second[2]["blob"]
    replica = first[1]["X-Sam-Gateway-Replica"]
    assert replica == second[1]["X-Sam-Gateway-Replica"]
    pod_ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in found}
    assert any(replica in (name, ip) or ip in replica for name, ip in pod_ips.items()), (replica, pod_ips)
    delta: dict[str, Any] = {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in names}
    assert sorted(delta.values()) == [(0, 0), (1, 1)], delta
