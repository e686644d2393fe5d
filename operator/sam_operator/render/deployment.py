"""The encoder Deployment: init containers that fetch the checkpoint and export the decoder, the encoder
container configured through ``SAM_INFERENCE_*`` env vars, probes, restricted security context and a rollout
strategy that never needs a spare GPU. Pure; called by ``render.build_children``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sam_operator.naming import child_name, pvc_name
from sam_operator.render.labels import labels, selector_labels
from sam_operator.resources import SamModel
from sam_operator.settings import OperatorSettings

__all__ = [
    "CHECKPOINT_MOUNT",
    "HTTP_PORT",
    "MODEL_CACHE_MOUNT",
    "RUN_AS_USER",
    "build_deployment",
    "checkpoint_file_stem",
    "checkpoint_path",
    "decoder_path",
    "prepares_encoder",
]

HTTP_PORT = 8080
MODEL_CACHE_MOUNT = "/models"
CHECKPOINT_MOUNT = "/checkpoint"
RUN_AS_USER = 10001
_FILE_STEM_RE = re.compile(r"[^A-Za-z0-9._-]")
# A container that fails without writing /dev/termination-log gets its last log lines as the termination message,
# so the SamModel's status can quote why (a wrong sha256, a traceback) without anyone running kubectl logs.
_TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"
# The startup probe checks often, so that a pod turns Ready soon after its model is loaded (a 10 s period cost up
# to 10 s per pod start); its failure threshold still allows settings.startup_timeout_seconds.
_STARTUP_PROBE_PERIOD = 2


def checkpoint_file_stem(model: SamModel) -> str:
    """File name (without extension) of the cached checkpoint: the source's base name, sanitised."""
    source = model.spec.model.checkpoint
    raw = urlsplit(source.url).path if source.url else (source.pvc.path if source.pvc else "")
    base = raw.rstrip("/").rsplit("/", 1)[-1]
    for extension in (".pth", ".pt", ".bin"):
        base = base.removesuffix(extension)
    stem = _FILE_STEM_RE.sub("_", base).strip("._-")
    return stem or "checkpoint"


def checkpoint_path(model: SamModel) -> str:
    """``/models/<file>.pth``."""
    return f"{MODEL_CACHE_MOUNT}/{checkpoint_file_stem(model)}.pth"


def decoder_path(model: SamModel) -> str:
    """``/models/<file>.decoder.onnx``."""
    return f"{MODEL_CACHE_MOUNT}/{checkpoint_file_stem(model)}.decoder.onnx"


def _security_context() -> dict[str, Any]:
    # The "restricted" Pod Security Standard, for every container.
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _compute_resources(model: SamModel, *, with_gpu: bool) -> dict[str, Any]:
    resources = model.spec.resources
    requests = {k: str(v) for k, v in resources.requests.model_dump().items() if v is not None}
    limits = {k: str(v) for k, v in resources.limits.model_dump().items() if v is not None}
    if with_gpu and resources.gpus > 0:
        # Extended resources go in limits; Kubernetes copies them into requests.
        limits[resources.gpu_resource_name] = str(resources.gpus)
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _env(model: SamModel) -> list[dict[str, str]]:
    spec = model.spec
    runtime = spec.runtime
    pairs: list[tuple[str, str | None]] = [
        ("SAM_INFERENCE_HOST", "0.0.0.0"),
        ("SAM_INFERENCE_PORT", str(HTTP_PORT)),
        ("SAM_INFERENCE_MODEL_FAMILY", spec.model.family),
        ("SAM_INFERENCE_MODEL_VARIANT", spec.model.variant),
        ("SAM_INFERENCE_CHECKPOINT_PATH", checkpoint_path(model)),
        # SAM 2 has no exported decoder (no export-decoder init container, /v1/decoder.onnx answers 404).
        ("SAM_INFERENCE_DECODER_PATH", decoder_path(model) if spec.model.family == "sam" else None),
        ("SAM_INFERENCE_MODE", spec.cvat.mode),
        ("SAM_INFERENCE_DEVICE", runtime.device),
        ("SAM_INFERENCE_ENGINE", runtime.engine),
        ("SAM_INFERENCE_PRECISION", runtime.precision),
        ("SAM_INFERENCE_MAX_BATCH_SIZE", str(runtime.max_batch_size)),
        ("SAM_INFERENCE_BATCH_WAIT_MS", str(runtime.batch_wait_milliseconds)),
        ("SAM_INFERENCE_MAX_QUEUE", str(runtime.max_queue)),
        (
            "SAM_INFERENCE_MAX_CONCURRENCY",
            None if runtime.max_concurrency is None else str(runtime.max_concurrency),
        ),
        ("SAM_INFERENCE_MAX_BODY_BYTES", str(runtime.max_body_bytes)),
        ("SAM_INFERENCE_MAX_PIXELS", str(runtime.max_pixels)),
        ("SAM_INFERENCE_REQUEST_TIMEOUT_S", str(runtime.request_timeout_seconds)),
        ("SAM_INFERENCE_CACHE_MAX_BYTES", str(spec.cache.max_bytes_value)),
        ("SAM_INFERENCE_CACHE_MAX_ENTRIES", str(spec.cache.max_entries)),
        # The checkpoint's sha256 keys the embedding cache; without one the server derives it.
        ("SAM_INFERENCE_MODEL_ID", spec.model.checkpoint.sha256),
    ]
    return [{"name": name, "value": value} for name, value in pairs if value is not None]


def _probe(path: str, *, period: int, failure_threshold: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failure_threshold,
        "successThreshold": 1,
    }


def _strategy(model: SamModel) -> dict[str, Any]:
    # A GPU rollout must never wait for a spare GPU: with maxSurge 0 the old pod is stopped (freeing its GPU)
    # before its replacement is created, one pod at a time. This works for any replica count and does not depend
    # on replicas==1 (which the autoscaler can change under us), whereas a surge pod would sit Pending forever on
    # a cluster whose GPUs are all in use. The price is one replica less during a rollout. CPU pods surge
    # instead, so a CPU rollout never drops capacity.
    if model.spec.resources.gpus > 0:
        return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def _volumes(model: SamModel) -> list[dict[str, Any]]:
    spec = model.spec
    cache: dict[str, Any] = (
        {"name": "model-cache", "persistentVolumeClaim": {"claimName": pvc_name(model.name)}}
        if spec.cache.shared_volume.enabled
        else {"name": "model-cache", "emptyDir": {}}
    )
    volumes = [cache, {"name": "tmp", "emptyDir": {}}]
    if spec.model.checkpoint.pvc is not None:
        volumes.append(
            {
                "name": "checkpoint-source",
                "persistentVolumeClaim": {
                    "claimName": spec.model.checkpoint.pvc.claim_name,
                    "readOnly": True,
                },
            }
        )
    return volumes


def _init_containers(model: SamModel, image: str, pull_policy: str) -> list[dict[str, Any]]:
    spec = model.spec
    source = spec.model.checkpoint
    fetch_source = source.url if source.url else f"{CHECKPOINT_MOUNT}/{source.pvc.path if source.pvc else ''}"
    fetch_args = ["fetch", "--source", str(fetch_source)]
    if source.sha256:
        fetch_args += ["--sha256", source.sha256]
    fetch_args += ["--output", checkpoint_path(model)]
    mounts: list[dict[str, Any]] = [
        {"name": "model-cache", "mountPath": MODEL_CACHE_MOUNT},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    fetch_mounts: list[dict[str, Any]] = [dict(m) for m in mounts]
    if source.pvc is not None:
        fetch_mounts.append({"name": "checkpoint-source", "mountPath": CHECKPOINT_MOUNT, "readOnly": True})
    fetch = {
        "name": "fetch-checkpoint",
        "image": image,
        "imagePullPolicy": pull_policy,
        "securityContext": _security_context(),
        "command": ["sam-inference"],
        "args": fetch_args,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "terminationMessagePolicy": _TERMINATION_MESSAGE_POLICY,
        "volumeMounts": fetch_mounts,
    }
    export = {
        "name": "export-decoder",
        "image": image,
        "imagePullPolicy": pull_policy,
        "securityContext": _security_context(),
        "command": ["sam-inference"],
        "args": [
            "export-decoder",
            "--checkpoint",
            checkpoint_path(model),
            "--variant",
            spec.model.variant,
            "--output",
            decoder_path(model),
        ],
        # Loading the checkpoint needs as much memory as the encoder, but no GPU (the export runs on CPU). Init
        # containers run one at a time, so this does not add to the pod's effective request.
        "resources": _compute_resources(model, with_gpu=False),
        "terminationMessagePolicy": _TERMINATION_MESSAGE_POLICY,
        "volumeMounts": [dict(m) for m in mounts],
    }
    if spec.model.family != "sam":
        return [fetch]
    if not prepares_encoder(model):
        return [fetch, export]
    prepare = {
        **export,
        "name": "prepare-encoder",
        "args": ["prepare-encoder", "--checkpoint", checkpoint_path(model), "--variant", spec.model.variant],
        "volumeMounts": [dict(m) for m in mounts],
    }
    return [fetch, export, prepare]


def prepares_encoder(model: SamModel) -> bool:
    """Whether the pod prepares the encoder's OpenVINO IR in an init container: a CPU SamModel that leaves engine
    and precision to ``auto`` and keeps its model cache on the shared PVC, where the IR outlives the pod (its
    ``auto`` then runs openvino, the fastest CPU engine; with an emptyDir every start would pay minutes)."""
    spec = model.spec
    runtime = spec.runtime
    return (
        spec.model.family == "sam"
        and runtime.device == "cpu"
        and runtime.engine == "auto"
        and runtime.precision == "auto"
        and spec.cache.shared_volume.enabled
    )


def build_deployment(model: SamModel, settings: OperatorSettings) -> dict[str, Any]:
    """The encoder Deployment of ``model`` (apps/v1)."""
    spec = model.spec
    name = child_name(model.name)
    image = spec.image or settings.encoder_image
    pull_policy = spec.image_pull_policy or settings.image_pull_policy
    startup_period = _STARTUP_PROBE_PERIOD
    encoder = {
        "name": "encoder",
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": ["sam-inference"],
        "args": ["serve"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": _env(model),
        "resources": _compute_resources(model, with_gpu=True),
        # Loading ViT-H (2.5 GB) and warming up can take minutes: the startup probe allows
        # settings.startup_timeout_seconds before liveness takes over.
        "startupProbe": _probe(
            "/healthz",
            period=startup_period,
            failure_threshold=-(-settings.startup_timeout_seconds // startup_period),
        ),
        "livenessProbe": _probe("/healthz", period=10, failure_threshold=3),
        "readinessProbe": _probe("/readyz", period=5, failure_threshold=3),
        "terminationMessagePolicy": _TERMINATION_MESSAGE_POLICY,
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "model-cache", "mountPath": MODEL_CACHE_MOUNT},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict[str, Any] = {
        # The encoder never talks to the API server.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": _init_containers(model, image, pull_policy),
        "containers": [encoder],
        "volumes": _volumes(model),
        "terminationGracePeriodSeconds": 30,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    if spec.affinity:
        pod_spec["affinity"] = _deep_copy(spec.affinity)
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name
    secrets = [s.name for s in spec.image_pull_secrets] + [
        s for s in settings.image_pull_secrets if s not in {p.name for p in spec.image_pull_secrets}
    ]
    if secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": model.namespace, "labels": labels(model.name)},
        "spec": {
            "replicas": spec.effective_replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(model.name)},
            "strategy": _strategy(model),
            "template": {"metadata": {"labels": labels(model.name)}, "spec": pod_spec},
        },
    }


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
