"""Property tests of the spec-to-render path: random SamModel bodies (hypothesis strategies over every spec field,
valid and invalid values, odd metadata) → `parse_sammodel` returns a `SamModel` or an `InvalidSpec` (never raises);
for every valid one `build_children` renders objects whose names are DNS-1123 labels (≤ 63), whose labels are valid
Kubernetes labels, whose containers (init containers included) all carry the restricted security context, and
whose cross-references (selector ↔ pod labels, Service ↔ Deployment, PVC, HPA target) are consistent."""

from __future__ import annotations

import re
from typing import Any

from fuzz._cases import count, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from sam_operator import cvat
from sam_operator.naming import is_dns1123_label
from sam_operator.render import build_children
from sam_operator.resources import InvalidSpec, SamModel, parse_sammodel
from sam_operator.settings import OperatorSettings

SHA = "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SETTINGS = OperatorSettings()
_INF = float("inf")

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


quantities = st.one_of(
    st.integers(0, 2**40),
    st.builds(
        lambda n, s: f"{n}{s}", st.integers(0, 10**6), st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M", "G", "m"])
    ),
    st.sampled_from(["1.5Gi", "500m", "2", "-1Gi", "1e3", "", " 1Gi ", "1GB", "0"]),
)
dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z", fullmatch=True)
k8s_names = st.one_of(
    dns_label,
    st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?){0,3}\Z", fullmatch=True),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=253),
    st.text(max_size=80),  # not even valid for the API server: must still not crash
)


small_quantity = st.builds(lambda n, unit: f"{n}{unit}", st.integers(1, 999), st.sampled_from(["", "Ki", "Mi", "Gi"]))


@st.composite
def valid_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A spec the CRD accepts (cross-field rules included); every field present or defaulted at random."""
    device = draw(st.sampled_from(["cuda", "cpu"]))
    variant = draw(st.sampled_from(["vit_b", "vit_l", "vit_h", "vit_tiny"]))
    mode = draw(st.sampled_from(["embedding", "masks"]))
    if draw(st.booleans()):
        checkpoint: dict[str, Any] = {
            "url": draw(
                st.sampled_from(
                    [
                        "https://example.com/sam_vit_h_4b8939.pth",
                        "http://x/y/",
                        "https://h/a%20b.pth",
                        "https://h/.pth",
                        "https://h/" + "x" * 300 + ".pth",
                        "https://h/%C3%BCmlaut.pth?x=1#f",
                        "https://h/..%2F..%2Fetc.pth",
                    ]
                )
            )
        }
    else:
        checkpoint = {
            "pvc": {
                "claimName": draw(dns_label),
                "path": draw(
                    st.sampled_from(
                        ["sam.pth", "a/b/sam_vit_b.pt", "dir/", ".", "x" * 1000, "weird name!.bin", "a/./b.pth"]
                    )
                ),
            }
        }
    checkpoint["sha256"] = SHA
    autoscaling_enabled = draw(st.booleans())
    min_replicas = draw(st.integers(1, 10))
    request_n = draw(st.integers(1, 64))
    spec: dict[str, Any] = {"model": {"variant": variant, "checkpoint": checkpoint}}
    engine = draw(st.sampled_from(["auto", "torch", "fused"] + (["openvino"] if device == "cpu" else [])))
    precisions = ["auto", "float32", "bfloat16"] + (["float16"] if device == "cuda" else ["int8"])
    if engine == "openvino":
        precisions = ["auto", "float32", "int8"]
    optional: dict[str, Any] = {
        "runtime": {
            "device": device,
            "engine": engine,
            "precision": draw(st.sampled_from(precisions)),
            "maxBatchSize": draw(st.integers(1, 64)),
            "batchWaitMilliseconds": draw(st.integers(0, 1000)),
            "maxQueue": draw(st.integers(1, 100000)),
            "maxConcurrency": draw(st.integers(1, 10000)),
            "maxBodyBytes": draw(st.integers(2**20, 2**30)),
            "maxPixels": draw(st.integers(1, 10**9)),
            "requestTimeoutSeconds": draw(st.integers(1, 3600)),
        },
        "cache": {
            "maxBytes": draw(st.one_of(st.integers(0, 2**40), small_quantity)),
            "maxEntries": draw(st.integers(0, 10**6)),
            "sharedVolume": {
                "enabled": draw(st.booleans()),
                "size": draw(small_quantity),
                "accessMode": draw(st.sampled_from(["ReadWriteMany", "ReadWriteOnce"])),
                "storageClassName": draw(dns_label),
            },
        },
        "replicas": draw(st.integers(1 if autoscaling_enabled else 0, 1000)),
        "autoscaling": {
            "enabled": autoscaling_enabled,
            "minReplicas": min_replicas,
            "maxReplicas": draw(st.integers(min_replicas, 1000)),
            "targetQueueDepth": draw(st.integers(1, 100000)),
        },
        "resources": {
            "gpus": 0 if device == "cpu" else draw(st.integers(1, 16)),
            "gpuResourceName": draw(st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"])),
            "requests": {"cpu": f"{request_n}", "memory": f"{request_n}Gi"},
            "limits": {"cpu": f"{request_n + draw(st.integers(0, 8))}", "memory": f"{request_n * 2}Gi"},
        },
        "nodeSelector": draw(
            st.dictionaries(st.sampled_from(["gpu", "node.kubernetes.io/instance-type"]), dns_label, max_size=2)
        ),
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "priorityClassName": draw(dns_label),
        "image": draw(st.sampled_from(["ghcr.io/x/sam:1", "localhost:5000/sam@sha256:" + "a" * 64])),
        "imagePullPolicy": draw(st.sampled_from(["Always", "IfNotPresent", "Never"])),
        "imagePullSecrets": draw(st.lists(st.fixed_dictionaries({"name": dns_label}), max_size=2)),
        "cvat": {
            "enabled": draw(st.booleans()),
            "mode": mode,
            "functionName": "pth-facebookresearch-sam-vit-h"
            if variant == "vit_h" and mode == "embedding" and draw(st.booleans())
            else draw(dns_label),
            "displayName": draw(st.text(min_size=1, max_size=128)),
        },
        "monitoring": {
            "serviceMonitor": draw(st.booleans()),
            "interval": draw(st.sampled_from(["30s", "1m", "500ms"])),
        },
        "networkPolicy": {
            "enabled": draw(st.booleans()),
            "additionalFrom": [{"podSelector": {"matchLabels": {"app": "cvat"}}}],
        },
    }
    if device == "cpu" or draw(st.booleans()):  # runtime/resources defaults are cuda/1 GPU
        spec["runtime"], spec["resources"] = optional.pop("runtime"), optional.pop("resources")
    for key, value in optional.items():
        if draw(st.booleans()):
            spec[key] = value
    return spec


MUTATIONS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("model", "variant"): st.sampled_from(["vit_x", "VIT_H", ""]),
    ("model", "family"): st.sampled_from(["sam2", ""]),
    ("model", "checkpoint"): st.sampled_from([{}, {"url": "https://h/x.pth"}, {"sha256": SHA}]),
    ("model", "checkpoint", "url"): st.sampled_from(["ftp://h/x.pth", "https://h/a b.pth", "", "h/x.pth"]),
    ("model", "checkpoint", "sha256"): st.sampled_from([SHA.upper(), SHA[:-1], "", "z" * 64]),
    ("model", "checkpoint", "pvc"): st.sampled_from(
        [
            {"claimName": "c", "path": "/abs.pth"},
            {"claimName": "c", "path": "a/../../b"},
            {"claimName": "", "path": "x"},
            {"path": "x"},
        ]
    ),
    ("runtime", "device"): st.sampled_from(["tpu", "CUDA"]),
    ("runtime", "precision"): st.sampled_from(["float16", "int8", "fp8"]),
    ("runtime", "engine"): st.sampled_from(["onnx", "Torch", ""]),
    ("runtime", "maxBatchSize"): st.sampled_from([0, 65, -1]),
    ("runtime", "maxQueue"): st.sampled_from([0, 100001]),
    ("runtime", "maxBodyBytes"): st.sampled_from([1023, 2**30 + 1]),
    ("runtime", "maxPixels"): st.sampled_from([0, 10**9 + 1]),
    ("runtime", "requestTimeoutSeconds"): st.sampled_from([0, 3601]),
    ("cache", "maxBytes"): st.sampled_from(["-1Gi", "500m", "1GB", "1e3", "", -5]),
    ("cache", "maxEntries"): st.sampled_from([-1, 10**6 + 1]),
    ("cache", "sharedVolume", "size"): st.sampled_from(["big", "", "-1Gi"]),
    ("cache", "sharedVolume", "accessMode"): st.just("ReadOnlyMany"),
    ("replicas",): st.sampled_from([-1, 1001, 0]),
    ("autoscaling", "minReplicas"): st.sampled_from([0, 1001, 999]),
    ("autoscaling", "maxReplicas"): st.sampled_from([0, 1001]),
    ("autoscaling",): st.just({"enabled": True}),
    ("resources", "gpus"): st.sampled_from([-1, 17, 0, 1]),
    ("resources", "limits", "memory"): st.sampled_from(["1Mi", "lots", "0"]),
    ("resources", "requests", "cpu"): st.sampled_from(["100000", "-1", "1 core"]),
    ("imagePullPolicy",): st.just("Sometimes"),
    ("cvat", "functionName"): st.sampled_from(["Upper", "-x", "a" * 64, "pth-facebookresearch-sam-vit-h", "a_b"]),
    ("cvat", "mode"): st.sampled_from(["both", ""]),
    ("cvat", "displayName"): st.sampled_from(["", "x" * 129]),
    ("monitoring", "interval"): st.sampled_from(["1d", "30", ""]),
    ("networkPolicy", "additionalFrom"): st.sampled_from([{}, "x"]),
    ("nodeSelector",): st.sampled_from([{"a": 1}, ["x"]]),
}


def _set(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = spec
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


@st.composite
def specs(draw: st.DrawFn, dirty: bool) -> dict[str, Any]:
    """A valid spec, then (half of the time) a few fields replaced by out-of-range or wrong-typed values."""
    spec = draw(valid_specs())
    if draw(st.booleans()):
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(sorted(MUTATIONS)))
            _set(spec, path, draw(st.one_of(MUTATIONS[path], junk) if dirty else MUTATIONS[path]))
    if draw(st.integers(0, 19)) == 7:
        spec[draw(st.text(max_size=8))] = draw(junk)  # unknown field: ignored
    return spec


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": draw(k8s_names), "uid": draw(st.uuids()).hex}
    if draw(st.booleans()):
        metadata["namespace"] = draw(st.one_of(dns_label, st.just("")))
    if draw(st.booleans()):
        # (an infinite float is test_infinite_generation_is_invalid_spec's business)
        metadata["generation"] = draw(st.one_of(st.integers(0, 2**40), junk.filter(lambda v: v not in (_INF, -_INF))))
    body: dict[str, Any] = {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": metadata,
        "spec": draw(specs(dirty=draw(st.integers(0, 3)) == 0)),
    }
    if draw(st.integers(0, 29)) == 17:  # hypothesis favours bounds: not 0
        body = draw(st.sampled_from([{**body, "spec": draw(junk)}, {**body, "metadata": draw(junk)}, {}]))
    return body


def _containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    pod = deployment["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def _check_labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and DNS1123_SUBDOMAIN.match(prefix)), key
        assert len(name) <= 63 and LABEL_NAME.match(name), key
        assert isinstance(value, str) and len(value) <= 63 and LABEL_VALUE.match(value), (key, value)


def check_rendered(model: SamModel, children: list[dict[str, Any]]) -> None:
    kinds = [c["kind"] for c in children]
    assert len(kinds) == len(set(kinds)), kinds
    by_kind = {c["kind"]: c for c in children}
    assert {"Deployment", "Service"} <= set(by_kind)
    for child in children:
        meta = child["metadata"]
        assert is_dns1123_label(meta["name"]) and len(meta["name"]) <= 63, meta["name"]
        assert meta["namespace"] == model.namespace
        _check_labels(meta["labels"])
    deployment = by_kind["Deployment"]
    template = deployment["spec"]["template"]
    _check_labels(template["metadata"]["labels"])
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    assert by_kind["Service"]["spec"]["selector"] == selector
    pod = template["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)
    for volume in pod["volumes"]:
        assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim"}, volume
    names = [c["name"] for c in _containers(deployment)]
    runtime = model.spec.runtime
    # A CPU model left at auto whose cache is on the PVC prepares its OpenVINO encoder there, once.
    prepares = runtime.device == "cpu" and runtime.engine == runtime.precision == "auto"
    prepares = prepares and model.spec.cache.shared_volume.enabled
    expected = ["fetch-checkpoint", "export-decoder", *(["prepare-encoder"] if prepares else []), "encoder"]
    assert names == expected, (names, runtime, model.spec.cache.shared_volume)
    for container in _containers(deployment):
        context = container["securityContext"]
        assert RESTRICTED_CONTAINER.items() <= context.items(), (container["name"], context)
        assert context.get("runAsUser", 1) != 0 and "privileged" not in context
        assert all(isinstance(e["value"], str) for e in container.get("env", []))
        assert all(isinstance(a, str) for a in container.get("args", []))
        for kind in ("limits", "requests"):
            assert all(isinstance(v, str) for v in container.get("resources", {}).get(kind, {}).values())
    assert ("NetworkPolicy" in by_kind) == model.spec.network_policy.enabled
    assert ("PersistentVolumeClaim" in by_kind) == model.spec.cache.shared_volume.enabled
    if "HorizontalPodAutoscaler" in by_kind:
        hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
        # The HPA drives the SamModel's scale subresource; the operator clamps and passes it on.
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "samoperator.io/v1alpha1",
            "kind": "SamModel",
            "name": model.name,
        }
    function = cvat.derive_function_name(model)
    assert is_dns1123_label(function), function
    annotations = cvat.build_annotations(model)
    assert all(isinstance(v, str) for v in annotations.values())
    # No boolean annotation is "false" (CVAT reads bool("false") as True). The display name is the user's text:
    # it may be "false" (hypothesis found a displayName "false").
    assert all(v != "false" for k, v in annotations.items() if k != "name"), annotations


@fuzz_settings(1000)
@given(bodies())
def test_parse_never_raises_and_valid_specs_render_safe_children(body: dict[str, Any]) -> None:
    parsed = parse_sammodel(body)
    if isinstance(parsed, InvalidSpec):
        assert parsed.reason == "InvalidSpec" and parsed.message.startswith("spec"), parsed
        count("spec→render: parse", "InvalidSpec")
        return
    assert isinstance(parsed, SamModel)
    for service_monitor_api in (False, True):
        children = build_children(parsed, SETTINGS, service_monitor_api=service_monitor_api)
        check_rendered(parsed, children)
    assert build_children(body, SETTINGS) == build_children(parsed, SETTINGS), "body and parsed model agree"
    count("spec→render: parse", "SamModel rendered")


@fuzz_settings(300)
@given(k8s_names)
def test_any_name_gives_valid_child_names(name: str) -> None:
    body = {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "model": {"variant": "vit_tiny", "checkpoint": {"url": "https://h/x.pth", "sha256": SHA}},
            "runtime": {"device": "cpu"},
            "resources": {"gpus": 0},
            "cache": {"sharedVolume": {"enabled": True}},
            "networkPolicy": {"enabled": True},
            "autoscaling": {"enabled": True, "targetQueueDepth": 4},
        },
    }
    parsed = parse_sammodel(body)
    assert isinstance(parsed, SamModel), parsed
    check_rendered(parsed, build_children(parsed, SETTINGS, service_monitor_api=True))
    count("spec→render: names", "ok")


def test_infinite_generation_is_invalid_spec() -> None:
    # Found by this suite: int(inf) raised OverflowError out of parse_sammodel.
    body = {
        "metadata": {"name": "x", "generation": _INF},
        "spec": {"model": {"checkpoint": {"url": "https://h/x.pth", "sha256": SHA}}},
    }
    assert isinstance(parse_sammodel(body), InvalidSpec)
