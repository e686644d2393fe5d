"""render: golden manifests per sample, plus the properties the architecture requires of every render.

Regenerate the golden files with `.venv/bin/python hack/update-golden.py` and review the diff.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import harness.golden as GOLDEN
import pytest
import yaml
from sam_operator.render import build_children, owner_reference
from sam_operator.resources import InvalidSpecError
from sam_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = sorted((ROOT / "crds" / "samples").glob("*.yaml"))


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u-1", "generation": 2},
        "spec": {
            "model": {"variant": "vit_b", "checkpoint": {"url": "https://x/sam_vit_b.pth", "sha256": "0" * 64}},
        },
    }
    base["spec"].update(spec)
    return base


def children(b: dict[str, Any], **kw: Any) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in build_children(b, GOLDEN.golden_settings(), **kw)}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_rendered_children_match_the_golden_file(sample: Path) -> None:
    golden = GOLDEN.golden_path(sample)
    assert golden.exists(), "run .venv/bin/python hack/update-golden.py"
    assert GOLDEN.render_golden(sample) == golden.read_text(), "run hack/update-golden.py and review the diff"


def test_build_children_does_not_mutate_its_input() -> None:
    b = body(affinity={"nodeAffinity": {"x": [1]}}, tolerations=[{"key": "k", "operator": "Exists"}])
    snapshot = copy.deepcopy(b)
    out = build_children(b, OperatorSettings())
    out[0]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["x"].append(2)
    assert b == snapshot


def test_invalid_body_raises_a_named_error() -> None:
    with pytest.raises(InvalidSpecError) as info:
        build_children({"metadata": {"name": "m"}, "spec": {"model": {}}}, OperatorSettings())
    assert info.value.invalid.reason == "InvalidSpec"


def test_pod_labels_selector_and_names_follow_the_architecture() -> None:
    dep = children(body())["Deployment"]
    assert dep["metadata"]["name"] == "sam-m"
    assert dep["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "sam-encoder",
        "app.kubernetes.io/instance": "m",
        "app.kubernetes.io/component": "encoder",
    }
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/managed-by"] == "sam-operator"
    assert pod_labels["app.kubernetes.io/part-of"] == "sam-operator"
    (encoder,) = dep["spec"]["template"]["spec"]["containers"]
    assert encoder["name"] == "encoder"
    assert encoder["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]


def test_init_containers_fetch_then_export_with_the_architecture_commands() -> None:
    pod = children(body())["Deployment"]["spec"]["template"]["spec"]
    fetch, export = pod["initContainers"]
    assert [fetch["name"], export["name"]] == ["fetch-checkpoint", "export-decoder"]
    assert fetch["command"] + fetch["args"] == [
        "sam-inference", "fetch", "--source", "https://x/sam_vit_b.pth", "--sha256", "0" * 64,
        "--output", "/models/sam_vit_b.pth",
    ]  # fmt: skip
    assert export["command"] + export["args"] == [
        "sam-inference", "export-decoder", "--checkpoint", "/models/sam_vit_b.pth", "--variant", "vit_b",
        "--output", "/models/sam_vit_b.decoder.onnx",
    ]  # fmt: skip


def _init_containers(**spec: Any) -> list[dict[str, Any]]:
    return list(children(body(**spec))["Deployment"]["spec"]["template"]["spec"]["initContainers"])


def test_a_cpu_model_left_at_auto_on_the_shared_volume_prepares_its_openvino_encoder() -> None:
    cpu, shared = {"device": "cpu"}, {"sharedVolume": {"enabled": True}}
    limits = {"gpus": 0, "limits": {"memory": "7Gi"}}
    _, export, prepare = _init_containers(runtime=cpu, cache=shared, resources=limits)
    assert prepare["name"] == "prepare-encoder"
    assert prepare["command"] + prepare["args"] == [
        "sam-inference", "prepare-encoder", "--checkpoint", "/models/sam_vit_b.pth", "--variant", "vit_b",
    ]  # fmt: skip
    # It sees the model's own memory limit (it skips what would not fit) and the same cache as the encoder.
    assert prepare["resources"] == export["resources"] and prepare["resources"]["limits"]["memory"] == "7Gi"
    assert prepare["volumeMounts"] == export["volumeMounts"]
    assert prepare["securityContext"] == export["securityContext"]
    no_prepare = [
        {"runtime": cpu, "resources": limits},  # an emptyDir: every start would pay the preparation
        {"runtime": {**cpu, "precision": "float32"}, "cache": shared, "resources": limits},
        {"runtime": {**cpu, "engine": "fused"}, "cache": shared, "resources": limits},
        {"runtime": {**cpu, "engine": "openvino"}, "cache": shared, "resources": limits},  # prepares at start
        {"cache": shared},  # cuda
    ]
    for spec in no_prepare:
        assert [c["name"] for c in _init_containers(**spec)] == ["fetch-checkpoint", "export-decoder"], spec


def test_pvc_checkpoint_is_mounted_read_only_and_fetched_from_its_path() -> None:
    source = {"pvc": {"claimName": "weights", "path": "sam/l.pth"}, "sha256": "1" * 64}
    b = body(model={"variant": "vit_l", "checkpoint": source})
    pod = children(b)["Deployment"]["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    assert fetch["args"] == [
        "fetch", "--source", "/checkpoint/sam/l.pth", "--sha256", "1" * 64, "--output", "/models/l.pth",
    ]  # fmt: skip
    assert {"name": "checkpoint-source", "mountPath": "/checkpoint", "readOnly": True} in fetch["volumeMounts"]
    assert {
        "name": "checkpoint-source",
        "persistentVolumeClaim": {"claimName": "weights", "readOnly": True},
    } in pod["volumes"]


def test_encoder_env_carries_the_runtime_spec() -> None:
    b = body(
        runtime={"device": "cuda", "precision": "bfloat16", "maxBatchSize": 8, "maxConcurrency": 3},
        cache={"maxBytes": "2Gi", "maxEntries": 10},
        cvat={"mode": "masks"},
    )
    env = {e["name"]: e["value"] for e in children(b)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SAM_INFERENCE_MODEL_VARIANT"] == "vit_b"
    assert env["SAM_INFERENCE_PRECISION"] == "bfloat16"
    assert env["SAM_INFERENCE_MAX_BATCH_SIZE"] == "8"
    assert env["SAM_INFERENCE_MAX_CONCURRENCY"] == "3"
    assert env["SAM_INFERENCE_CACHE_MAX_BYTES"] == str(2 * 2**30)
    assert env["SAM_INFERENCE_CACHE_MAX_ENTRIES"] == "10"
    assert env["SAM_INFERENCE_MODE"] == "masks"
    assert env["SAM_INFERENCE_MODEL_ID"] == "0" * 64
    assert all(name.startswith("SAM_INFERENCE_") for name in env)


def test_gpu_limit_uses_the_resource_name_and_rollout_never_needs_a_spare_gpu() -> None:
    dep = children(body(resources={"gpus": 2, "gpuResourceName": "amd.com/gpu"}))["Deployment"]
    encoder = dep["spec"]["template"]["spec"]["containers"][0]
    assert encoder["resources"]["limits"]["amd.com/gpu"] == "2"
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    export = dep["spec"]["template"]["spec"]["initContainers"][1]
    assert "amd.com/gpu" not in export.get("resources", {}).get("limits", {})


def test_cpu_rollout_surges() -> None:
    dep = children(body(runtime={"device": "cpu"}, resources={"gpus": 0}))["Deployment"]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert "limits" not in dep["spec"]["template"]["spec"]["containers"][0]["resources"]


def test_every_container_is_restricted_and_probed() -> None:
    pod = children(body())["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["initContainers"] + pod["containers"]:
        sc = container["securityContext"]
        assert sc["runAsUser"] == 10001 and sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    encoder = pod["containers"][0]
    assert encoder["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert encoder["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert encoder["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}


def test_model_cache_is_an_empty_dir_unless_shared() -> None:
    plain = children(body())
    assert {"name": "model-cache", "emptyDir": {}} in plain["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert "PersistentVolumeClaim" not in plain
    shared = children(body(cache={"sharedVolume": {"enabled": True, "storageClassName": "nfs"}}))
    pvc = shared["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "sam-m-model-cache"
    assert pvc["spec"]["storageClassName"] == "nfs" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = shared["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "sam-m-model-cache"}} in volumes


def test_pdb_only_for_more_than_one_replica() -> None:
    assert "PodDisruptionBudget" not in children(body())
    assert children(body(replicas=2))["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    scaled = body(replicas=3, autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 4, "targetQueueDepth": 2})
    assert "PodDisruptionBudget" not in children(scaled)


def test_hpa_scales_the_sammodel_and_replicas_are_clamped() -> None:
    b = body(
        replicas=9,
        autoscaling={
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 5,
            "targetQueueDepth": 4,
            "targetLatencyMilliseconds": 250,
        },
    )
    out = children(b)
    hpa = out["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "samoperator.io/v1alpha1", "kind": "SamModel", "name": "m"}
    metrics = {m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]}
    assert metrics == {"sam_inference_queue_depth": "4", "sam_inference_request_duration_seconds_average": "250m"}
    assert out["Deployment"]["spec"]["replicas"] == 5
    assert "HorizontalPodAutoscaler" not in children(body())


def test_service_monitor_only_when_the_api_exists_and_asked() -> None:
    assert "ServiceMonitor" not in children(body())
    sm = children(body(), service_monitor_api=True)["ServiceMonitor"]
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert "ServiceMonitor" not in children(body(monitoring={"serviceMonitor": False}), service_monitor_api=True)


def test_network_policy_when_enabled() -> None:
    assert "NetworkPolicy" not in children(body())
    extra = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    policy = children(body(networkPolicy={"enabled": True, "additionalFrom": [extra]}))["NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert rule["from"][1] == extra


def test_service_exposes_http_8080() -> None:
    svc = children(body())["Service"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]


def test_owner_reference_points_at_the_sammodel() -> None:
    assert owner_reference(body()) == {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "name": "m",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_golden_output_is_valid_yaml_for_every_sample() -> None:
    for sample in SAMPLES:
        docs = [d for d in yaml.safe_load_all(GOLDEN.golden_path(sample).read_text()) if d]
        assert {d["kind"] for d in docs} >= {"Deployment", "Service"}


def test_network_policy_pins_the_gateway_peer_to_its_namespace_when_known() -> None:
    from sam_operator.render.network import build_networkpolicy
    from sam_operator.resources import SamModel, parse_sammodel
    from sam_operator.settings import OperatorSettings

    body = {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": {"name": "np", "namespace": "models", "uid": "u", "generation": 1},
        "spec": {
            "model": {"variant": "vit_tiny", "checkpoint": {"url": "https://h/x.pth", "sha256": "a" * 64}},
            "runtime": {"device": "cpu"},
            "resources": {"gpus": 0},
            "networkPolicy": {"enabled": True},
        },
    }
    model = parse_sammodel(body)
    assert isinstance(model, SamModel)
    anywhere = build_networkpolicy(model, OperatorSettings())
    pinned = build_networkpolicy(model, OperatorSettings(gateway_namespace="sam-system"))
    assert anywhere is not None and pinned is not None
    assert anywhere["spec"]["ingress"][0]["from"][0]["namespaceSelector"] == {}
    peer = pinned["spec"]["ingress"][0]["from"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "sam-system"}}
    assert peer["podSelector"]["matchLabels"] == OperatorSettings().gateway_pod_labels
