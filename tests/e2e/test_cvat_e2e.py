"""CVAT ↔ gateway ↔ encoder, end to end on the real local cluster, with requests shaped exactly like CVAT's.

kwok pods run no containers: ``harness.pods.PodRunner`` runs each Running encoder pod's own init containers and
``encoder`` command as local processes and annotates the pod with their loopback address, which the gateway
(started with ``SAM_GATEWAY_POD_ADDRESS_ANNOTATION``) dials instead of the pod IP.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness.cluster import Cluster, wait_for
from harness.cvat import CvatClient, decode_cvat_rle, interactor_payload, synthetic_image
from harness.gateway import Gateway
from harness.model_server import CheckpointServer
from harness.operator import sammodel
from harness.pods import PodProcess, PodRunner
from harness.processes import http_get
from harness.reference import assert_blob_decodes_to_the_pytorch_mask
from harness.sam import get_sam, wait_condition
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

SELECTOR = "app.kubernetes.io/component=encoder,app.kubernetes.io/instance={}"


def tiny_sammodel(name: str, server: CheckpointServer, mode: str, replicas: int) -> dict[str, Any]:
    return sammodel(
        name,
        model={"variant": "vit_tiny", "checkpoint": {"url": server.url, "sha256": server.sha256}},
        # float32: the reference path, which these tests compare with SamPredictor bit for bit (the faster
        # defaults are held to their own fidelity bounds in tests/unit/inference).
        runtime={"device": "cpu", "maxBatchSize": 2, "precision": "float32"},
        replicas=replicas,
        cvat={"mode": mode, "displayName": f"Tiny SAM ({mode})"},
    )


class Deployed:
    def __init__(self, name: str, runner: PodRunner, function: str) -> None:
        self.name, self.runner, self.function = name, runner, function

    def processes(self) -> list[PodProcess]:
        return [p for p in self.runner.processes.values() if p.main and p.main.running]


def deploy(
    cluster: Cluster, namespace: str, server: CheckpointServer, work: Path, name: str, mode: str, replicas: int
) -> Iterator[Deployed]:
    cluster.apply(tiny_sammodel(name, server, mode, replicas), namespace)
    with PodRunner(cluster, namespace, SELECTOR.format(name), work) as runner:
        sam = wait_condition(cluster, namespace, name, "Ready", "True", timeout=120)
        runner.wait_ready(replicas)
        yield Deployed(name, runner, sam["status"]["cvat"]["functionName"])


def deployed_model(name: str, mode: str, replicas: int) -> Any:
    """A module-scoped fixture: SamModel ``name`` Ready, its pods' processes running, for the whole module."""

    @pytest.fixture(scope="module")
    def fixture(
        cluster: Cluster,
        e2e_namespace: str,
        checkpoint_server: CheckpointServer,
        gateway: Gateway,
        tmp_path_factory: pytest.TempPathFactory,
    ) -> Iterator[Deployed]:
        work = tmp_path_factory.mktemp(f"pods-{name}")
        yield from deploy(cluster, e2e_namespace, checkpoint_server, work, name, mode, replicas=replicas)

    return fixture


embedding_model = deployed_model("tiny-embed", "embedding", replicas=2)
masks_model = deployed_model("tiny-masks", "masks", replicas=1)


def listed(gateway: Gateway, function: str, present: bool = True) -> dict[str, Any]:
    cvat = CvatClient(gateway.port)

    def check() -> dict[str, Any] | None:
        functions = cvat.list_functions()
        return functions if (function in functions) == present else None

    result: dict[str, Any] = wait_for(check, 60, what=f"{function} {'listed' if present else 'unlisted'}")
    return result


def metric(port: int, name: str) -> float:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == name)


def listed_with_every_replica(gateway: Gateway, model: Deployed) -> dict[str, Any]:
    """The listing once the gateway's endpoint watch has seen every running replica (a live field: until then
    a GET a moment later can carry more ``internalInvocationUrls`` than the list did)."""
    cvat = CvatClient(gateway.port)
    expected = len(model.processes())

    def check() -> dict[str, Any] | None:
        functions = cvat.list_functions()
        urls = functions.get(model.function, {}).get("status", {}).get("internalInvocationUrls", [])
        return functions if len(urls) == expected else None

    result: dict[str, Any] = wait_for(check, 60, what=f"{model.function} listed with {expected} replicas")
    return result


def test_discovery_lists_the_function_with_the_fields_cvat_reads(gateway: Gateway, embedding_model: Deployed) -> None:
    functions = listed_with_every_replica(gateway, embedding_model)
    fn = functions[embedding_model.function]
    assert fn["metadata"]["name"] == embedding_model.function
    annotations = fn["metadata"]["annotations"]
    assert annotations["type"] == "interactor"
    assert annotations["name"] == "Tiny SAM (embedding)"
    assert all(isinstance(v, str) for v in annotations.values())
    assert "false" not in annotations.values()
    assert int(annotations["version"]) >= 2
    assert fn["spec"]["description"]
    assert isinstance(fn["status"]["httpPort"], int)
    status, one = CvatClient(gateway.port).get_function(embedding_model.function)
    assert status == 200 and one == fn
    assert CvatClient(gateway.port).get_function("no-such-function")[0] == 404


def test_dashboard_blob_decoded_like_the_browser_matches_pytorch(
    gateway: Gateway, embedding_model: Deployed, checkpoint_server: CheckpointServer
) -> None:
    png, rgb = synthetic_image(seed=1)
    pos, neg = [[160.0, 120.0]], [[60.0, 50.0]]
    status, _, body = CvatClient(gateway.port).invoke_dashboard(
        embedding_model.function, interactor_payload(png, pos=pos, neg=neg)
    )
    assert status == 200, body
    blob = base64.b64decode(body["blob"])
    assert len(blob) == 4_194_304
    embedding = np.frombuffer(blob, dtype="<f4").reshape(1, 256, 64, 64)
    port = embedding_model.processes()[0].port
    code, decoder_bytes = http_get(f"http://127.0.0.1:{port}/v1/decoder.onnx")
    assert code == 200
    assert_blob_decodes_to_the_pytorch_mask(
        embedding, decoder_bytes, rgb, pos, neg, checkpoint_server.path, embedding_tolerance=1e-4
    )


def test_direct_mode_works_on_the_advertised_port_also_after_a_gateway_restart(
    gateway: Gateway, embedding_model: Deployed
) -> None:
    port = listed(gateway, embedding_model.function)[embedding_model.function]["status"]["httpPort"]
    png, _ = synthetic_image(seed=2)
    payload = interactor_payload(png, pos=[[10.0, 10.0]])
    status, _, body = CvatClient.invoke_direct(port, payload)
    assert status == 200 and len(base64.b64decode(body["blob"])) == 4_194_304
    gateway.restart()
    again = listed(gateway, embedding_model.function)[embedding_model.function]["status"]["httpPort"]
    assert again == port

    def answered() -> bool:
        code, _, _ = CvatClient.invoke_direct(port, payload)
        return code == 200

    wait_for(answered, 30, what="the direct port to answer after the restart")


def test_masks_mode_returns_cvat_rle_shapes(gateway: Gateway, masks_model: Deployed) -> None:
    listed(gateway, masks_model.function)
    png, rgb = synthetic_image(seed=3)
    status, _, body = CvatClient(gateway.port).invoke_dashboard(
        masks_model.function, interactor_payload(png, pos=[[160.0, 120.0]], bbox=[[100.0, 60.0], [220.0, 180.0]])
    )
    assert status == 200, body
    shapes = body["shapes"]
    assert len(shapes) == 1 and shapes[0]["type"] == "mask"
    mask, (xtl, ytl, xbr, ybr) = decode_cvat_rle(shapes[0]["points"])
    assert 0 <= xtl <= xbr < rgb.shape[1] and 0 <= ytl <= ybr < rgb.shape[0]
    assert mask.any()
    assert shapes[0]["attributes"][0]["spec_id"] == 0


def test_same_image_from_two_clients_hits_the_same_replica_cache(gateway: Gateway, embedding_model: Deployed) -> None:
    procs = embedding_model.processes()
    assert len(procs) == 2
    before = {
        p.name: (metric(p.port, "sam_inference_cache_hits_total"), metric(p.port, "sam_inference_cache_misses_total"))
        for p in procs
    }
    png, _ = synthetic_image(seed=4)
    first = CvatClient(gateway.port).invoke_dashboard(embedding_model.function, interactor_payload(png, [[5, 5]]))
    second = CvatClient(gateway.port).invoke_dashboard(embedding_model.function, interactor_payload(png, [[90, 40]]))
    assert first[0] == second[0] == 200
    assert first[2]["blob"] == second[2]["blob"]
    assert first[1]["X-Sam-Gateway-Replica"] == second[1]["X-Sam-Gateway-Replica"]
    delta = {
        p.name: (
            metric(p.port, "sam_inference_cache_hits_total") - before[p.name][0],
            metric(p.port, "sam_inference_cache_misses_total") - before[p.name][1],
        )
        for p in procs
    }
    assert sorted(delta.values()) == [(0, 0), (1, 1)], delta


def test_killing_a_replica_mid_stream_fails_no_request(gateway: Gateway, embedding_model: Deployed) -> None:
    victim = embedding_model.processes()[0]
    results: list[int] = []

    def stream() -> None:
        client = CvatClient(gateway.port)
        for seed in range(10, 22):
            png, _ = synthetic_image(seed=seed)
            results.append(client.invoke_dashboard(embedding_model.function, interactor_payload(png, [[1, 1]]))[0])

    thread = threading.Thread(target=stream)
    thread.start()
    wait_for(lambda: len(results) >= 3, 120, what="the stream to get going")
    assert victim.main is not None
    victim.main.kill()
    thread.join(300)
    assert results == [200] * 12, results


def test_a_sammodel_that_is_not_ready_is_not_listed_and_reappears(
    cluster: Cluster, e2e_namespace: str, gateway: Gateway, masks_model: Deployed
) -> None:
    listed(gateway, masks_model.function)
    cluster.kubectl("scale", f"sam/{masks_model.name}", "-n", e2e_namespace, "--replicas=0")
    wait_condition(cluster, e2e_namespace, masks_model.name, "Ready", "False", timeout=60)
    listed(gateway, masks_model.function, present=False)
    cluster.kubectl("scale", f"sam/{masks_model.name}", "-n", e2e_namespace, "--replicas=1")
    wait_condition(cluster, e2e_namespace, masks_model.name, "Ready", "True", timeout=60)
    masks_model.runner.wait_ready(1)
    listed(gateway, masks_model.function)
    assert get_sam(cluster, e2e_namespace, masks_model.name)["status"]["readyReplicas"] == 1
