"""Encoder pods meet the Pod Security Standard `restricted` (and the project's read-only root filesystem) for
every sample SamModel and every random valid spec; the checker itself catches each kind of violation; the
NetworkPolicy is rendered only when asked and admits only the gateway (and listed peers) on port 8080."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from fuzz._cases import count, fuzz_settings
from fuzz.test_fuzz_spec_render import valid_specs
from hypothesis import given
from sam_operator.render import build_children
from sam_operator.resources import SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings
from security.pss import all_containers, restricted_violations

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "crds" / "samples").glob("*.yaml"))
SETTINGS = OperatorSettings()


def _children(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    parsed = parse_sammodel(body)
    assert isinstance(parsed, SamModel), parsed
    return {c["kind"]: c for c in build_children(parsed, SETTINGS, service_monitor_api=True)}


def _pod(body: dict[str, Any]) -> dict[str, Any]:
    return _children(body)["Deployment"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_sample_encoder_pods_are_restricted(sample: Path) -> None:
    body = yaml.safe_load(sample.read_text())
    pod = _pod(body)
    assert restricted_violations(pod) == []
    # SAM 2 has no ONNX decoder to export: its pods fetch the checkpoint and serve.
    sam2 = body["spec"]["model"].get("family") == "sam2"
    expected = ["fetch-checkpoint", "encoder"] if sam2 else ["fetch-checkpoint", "export-decoder", "encoder"]
    assert [c["name"] for c in all_containers(pod)] == expected
    for container in all_containers(pod):
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0 and ctx["runAsGroup"] != 0
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        # A read-only root needs a writable /tmp for torch/onnx/PIL scratch files.
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False, "the encoder never talks to the API server"


@fuzz_settings(300)
@given(valid_specs())
def test_every_valid_spec_renders_restricted_pods(spec: dict[str, Any]) -> None:
    pod = _pod({"metadata": {"name": "x", "namespace": "ns"}, "spec": spec})
    assert restricted_violations(pod) == []
    count("security: restricted pods (random specs)")


@pytest.mark.parametrize(
    "breakage,expected",
    [
        (lambda p: p["initContainers"][0]["securityContext"].update(privileged=True), "fetch-checkpoint: privileged"),
        (lambda p: p["initContainers"][1]["securityContext"].pop("allowPrivilegeEscalation"), "export-decoder"),
        (lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "capabilities"),
        (lambda p: p["containers"][0]["securityContext"].update(runAsUser=0), "runAsUser 0"),
        (lambda p: p["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
        (lambda p: p.update(hostNetwork=True), "hostNetwork"),
        (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
        (lambda p: p["containers"][0]["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccomp"),
    ],
)
def test_checker_catches_each_violation(breakage: Any, expected: str) -> None:
    sample = yaml.safe_load(SAMPLES[0].read_text())
    pod = copy.deepcopy(_pod(sample))
    breakage(pod)
    assert any(expected in problem for problem in restricted_violations(pod)), restricted_violations(pod)


def test_networkpolicy_only_when_enabled() -> None:
    body = yaml.safe_load((REPO / "crds" / "samples" / "sammodel-minimal.yaml").read_text())
    assert "NetworkPolicy" not in _children(body)
    body["spec"]["networkPolicy"] = {
        "enabled": True,
        "additionalFrom": [{"namespaceSelector": {"matchLabels": {"team": "cvat"}}}],
    }
    children = _children(body)
    policy = children["NetworkPolicy"]
    deployment = children["Deployment"]
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    gateway, extra = rule["from"]
    assert gateway == {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(SETTINGS.gateway_pod_labels)}}
    assert extra == {"namespaceSelector": {"matchLabels": {"team": "cvat"}}}
    # Never an allow-all peer: every peer names pods or namespaces by label.
    assert all(
        peer.get("podSelector", {}).get("matchLabels") or peer.get("namespaceSelector", {}).get("matchLabels")
        for peer in rule["from"]
    )
