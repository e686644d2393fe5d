"""Shared test data for the gateway tests: SamModel/pod body builders and a fake encoder replica."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from harness.processes import free_port as free_port  # re-exported: the gateway tests' loopback ports
from prometheus_client.parser import text_string_to_metric_families
from sam_contract.cvat import CvatStatus
from sam_gateway.routing import image_digest, rank_replicas

SAM_ANNOTATIONS = {
    "name": "Segment Anything",
    "type": "interactor",
    "version": "2",
    "spec": "",
    "min_pos_points": "0",
    "min_neg_points": "0",
    "startswith_box_optional": "true",
    "help_message": "The interactor allows to get a mask of an object using at least one positive, and any "
    "negative points inside it",
}
SAM_FUNCTION = "pth-facebookresearch-sam-vit-h"


def sammodel(
    name: str = "vit-h",
    namespace: str = "models",
    *,
    function_name: str = SAM_FUNCTION,
    ready: bool = True,
    enabled: bool = True,
    http_port: int | None = 32768,
    mode: str = "embedding",
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, Any] | None = None,
    selector: str | None = "default",
) -> dict[str, Any]:
    """A SamModel body with the status the operator writes (docs/architecture.md)."""
    if selector == "default":
        selector = (
            f"app.kubernetes.io/name=sam-encoder,app.kubernetes.io/instance={name},app.kubernetes.io/component=encoder"
        )
    status: dict[str, Any] = {
        "observedGeneration": 1,
        "replicas": 2,
        "readyReplicas": 2 if ready else 0,
        "endpoint": f"http://sam-{name}.{namespace}.svc:8080",
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "Ready" if ready else "NotReady",
            },
            {"type": "Progressing", "status": "False", "reason": "Done"},
        ],
        # The shared type the operator's status writer uses (tests/unit/gateway/test_gateway_status_contract.py
        # feeds the operator's own derive_status output to the catalog).
        "cvat": CvatStatus(
            enabled=enabled,
            function_name=function_name,
            mode=mode,
            description="Interactive object segmentation with Segment-Anything (vit_h)",
            http_port=http_port,
            annotations=dict(SAM_ANNOTATIONS if annotations is None else annotations),
        ).to_status(),
    }
    if selector is not None:
        status["selector"] = selector
    return {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "resourceVersion": "100",
            "generation": 1,
        },
        "spec": {"model": {"variant": "vit_h"}},
        "status": status,
    }


def pod(
    name: str,
    *,
    instance: str = "vit-h",
    namespace: str = "models",
    ip: str | None = "10.0.0.1",
    phase: str = "Running",
    ready: bool = True,
    terminating: bool = False,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An encoder pod body as the API serves it."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "sam-encoder",
            "app.kubernetes.io/instance": instance,
            "app.kubernetes.io/component": "encoder",
            "app.kubernetes.io/managed-by": "sam-operator",
            "app.kubernetes.io/part-of": "sam-operator",
        },
        "annotations": dict(annotations or {}),
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:05:00Z"
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "True" if ready else "False"},
        ],
    }
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "status": status}


def invocation_body(image: bytes) -> bytes:
    """A CVAT interactor payload (cvat-protocol §4.3) as CVAT's `requests` serialises it."""
    payload = {
        "image": base64.b64encode(image).decode(),
        "pos_points": [[10.0, 12.5]],
        "neg_points": [],
        "obj_bbox": [],
    }
    return json.dumps(payload).encode()


def image_routed_to(primary: str, replicas: list[str]) -> bytes:
    """An image whose rendezvous primary among ``replicas`` is ``primary``."""
    for i in range(10_000):
        image = f"frame-{i}".encode()
        if rank_replicas(image_digest(invocation_body(image)), replicas)[0] == primary:
            return image
    raise AssertionError("no image found")


@dataclass
class FakeEncoder:
    """A loopback HTTP server standing in for one encoder replica; records what it received."""

    name: str
    # ok | slow | drop | drop-once | status:<code> | cut (headers and half the body, then the connection closes) |
    # stall (headers and half the body, then nothing until released)
    behaviour: str = "ok"
    answer_bytes: int = 0  # > 0: the blob is padded so the JSON answer is about this long (an embedding's 5.6 MB)
    received: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    server: TestServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append({"path": request.path, "headers": dict(request.headers), "body": body})
        if self.behaviour == "slow":
            await asyncio.wait_for(self.release.wait(), timeout=10)
        if self.behaviour == "drop" or (self.behaviour == "drop-once" and len(self.received) == 1):
            # The process dies mid-request, or (drop-once) the server closes a kept-alive connection as the
            # request arrives: the connection closes without a response.
            assert request.transport is not None
            request.transport.close()
            await asyncio.sleep(0.05)
            return web.Response()
        if self.behaviour.startswith("status:"):
            code = int(self.behaviour.split(":", 1)[1])
            return web.json_response({"error": f"{self.name} says {code}"}, status=code)
        blob = base64.b64encode(self.name.encode()).decode()
        blob += "A" * max(0, self.answer_bytes - len(blob) - 12)
        headers = {"X-Nuclio-Logs": "[]", "X-Encoder-Replica": self.name, "X-Cache": "miss"}
        if self.behaviour in ("cut", "stall"):
            payload = json.dumps({"blob": blob}).encode()
            response = web.StreamResponse(headers={**headers, "Content-Type": "application/json"})
            response.content_length = len(payload)
            await response.prepare(request)
            await response.write(payload[: len(payload) // 2])
            if self.behaviour == "stall":
                await asyncio.wait_for(self.release.wait(), timeout=10)
            assert request.transport is not None
            request.transport.close()
            return response
        return web.json_response({"blob": blob}, headers=headers)


async def metric(client: TestClient[Any, Any], name: str, labels: dict[str, str]) -> float:
    """The value of the gateway's sample ``name`` whose labels include ``labels`` (0 when it does not exist)."""
    text = await (await client.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


EncoderFactory = Callable[..., Awaitable[FakeEncoder]]
