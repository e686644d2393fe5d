"""The operator → gateway contract: what ``derive_status`` writes is what the catalog lists, with no hand-written
status in between; and the gateway routes one image alike in every base64 form of it the encoder accepts."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sam_contract.cvat import CvatStatus
from sam_contract.encoding import InvalidBase64Error, decode_base64
from sam_gateway.catalog import Catalog
from sam_gateway.nuclio import build_function
from sam_gateway.routing import image_digest
from sam_inference.errors import BadRequestError
from sam_inference.imaging import decode_base64 as encoder_decode_base64
from sam_operator.ports import choose_http_port
from sam_operator.render import build_children
from sam_operator.settings import OperatorSettings
from sam_operator.status import Observed, derive_status

SAMPLES = Path(__file__).resolve().parents[3] / "crds" / "samples"
SETTINGS = OperatorSettings()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _sample(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((SAMPLES / name).read_text())
    body["metadata"].setdefault("namespace", "models")
    body["metadata"].update(uid="u-1", generation=1, creationTimestamp="2026-01-01T00:00:00Z", resourceVersion="7")
    return body


def _serving(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``body`` with the status the operator derives once its Deployment is fully ready, and one Ready pod."""
    children = build_children(body, SETTINGS)
    deployment = copy.deepcopy(next(c for c in children if c["kind"] == "Deployment"))
    replicas = int(deployment["spec"]["replicas"])
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }
    template = deployment["spec"]["template"]
    pod = {
        "metadata": {
            "name": "sam-pod-0",
            "namespace": body["metadata"]["namespace"],
            "labels": dict(template["metadata"]["labels"]),
        },
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.1.2.3", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    port = choose_http_port(
        "models/x",
        enabled=bool(body["spec"].get("cvat", {}).get("enabled", True)),
        kept=None,
        taken=set(),
        base=SETTINGS.direct_port_base,
        size=SETTINGS.direct_port_range_size,
    )
    status = derive_status(body, Observed(deployment=deployment, pods=[pod], http_port=port), NOW)
    return {**body, "status": status}, pod


@pytest.mark.parametrize("sample", ["sammodel-minimal.yaml", "sammodel-masks.yaml", "sammodel-gpu.yaml"])
def test_the_status_the_operator_writes_is_the_function_the_gateway_lists(sample: str) -> None:
    body, pod = _serving(_sample(sample))
    written = body["status"]["cvat"]
    catalog = Catalog()
    assert catalog.upsert_model(body) is True
    assert catalog.upsert_pod(pod) is True

    [function] = catalog.functions()
    assert function.name == written["functionName"]
    assert function.mode == written["mode"] == body["spec"].get("cvat", {}).get("mode", "embedding")
    assert function.http_port == written["httpPort"]
    assert function.description == written["description"]
    assert dict(function.annotations) == written["annotations"]
    # status.selector (written by the operator) selects the pods the operator's Deployment template labels.
    assert catalog.replicas(function) == ["10.1.2.3:8080"]
    assert catalog.by_port(written["httpPort"]) == function
    rendered = build_function(function, "cvat", catalog.replicas(function))
    assert rendered["metadata"]["annotations"] == written["annotations"]  # already CVAT-ready: all strings


def test_the_written_status_is_exactly_the_shared_type() -> None:
    body, _ = _serving(_sample("sammodel-minimal.yaml"))
    written = body["status"]["cvat"]
    parsed = CvatStatus.from_status(written)
    assert parsed is not None
    assert parsed.to_status() == written
    assert json.loads(json.dumps(written)) == written  # plain JSON, as the API server stores it


def test_a_status_that_is_not_ready_or_not_enabled_lists_nothing() -> None:
    pending = _sample("sammodel-minimal.yaml")
    pending["status"] = derive_status(pending, Observed(), NOW)
    disabled = _sample("sammodel-masks.yaml")
    disabled["spec"]["cvat"]["enabled"] = False
    disabled, _ = _serving(disabled)
    assert "httpPort" not in disabled["status"]["cvat"]
    catalog = Catalog()
    assert catalog.upsert_model(pending) is False
    assert catalog.upsert_model(disabled) is False
    assert catalog.functions() == []


def test_a_malformed_status_cvat_is_not_listed() -> None:
    body, _ = _serving(_sample("sammodel-minimal.yaml"))
    body["status"]["cvat"]["annotations"] = ["not", "a", "map"]
    assert Catalog().upsert_model(body) is False


ENCODED = base64.b64encode(bytes(range(256)) * 3).decode()
BASE64_CASES = [
    ENCODED,
    "data:image/png;base64," + ENCODED,
    ENCODED[:64] + "\n" + ENCODED[64:],
    " " + ENCODED + "\n",
    ENCODED.rstrip("=") + "A",  # wrong length
    ENCODED.replace("+", "-").replace("/", "_"),  # URL-safe alphabet: the encoder rejects it
    base64.b64encode(b"\xfb\xff\xfe" * 20).decode().rstrip("="),
    "data:;base64," + ENCODED,
    "",
    "====",
    "%%%",
]


@pytest.mark.parametrize("text", BASE64_CASES)
def test_one_image_routes_alike_in_every_base64_form_the_encoder_accepts(text: str) -> None:
    try:
        expected: bytes | None = encoder_decode_base64(text)
    except BadRequestError:
        expected = None
    try:
        shared: bytes | None = decode_base64(text)
    except InvalidBase64Error:
        shared = None
    assert shared == expected
    body = json.dumps({"image": text}).encode()
    if expected is not None:  # the encoder's cache key is this image's: the gateway picks its replica
        canonical = json.dumps({"image": base64.b64encode(expected).decode()}).encode()
        assert image_digest(body) == image_digest(canonical)
    else:  # the encoder answers 400 whichever replica gets it; the key is still defined
        assert len(image_digest(body)) == 32
