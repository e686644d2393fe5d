"""The gateway side of `bench/soak_gateway.py`: the real `sam_gateway` app on 127.0.0.1 with a static catalog (one
Ready SamModel, one encoder pod annotated with the encoder's address), so it needs no Kubernetes API.

    python bench/soak_gateway_app.py PORT ENCODER_ADDRESS [TOKEN]
"""

from __future__ import annotations

import sys

FUNCTION = "pth-facebookresearch-sam-vit-h"
ANNOTATION = "samoperator.io/test-address"


def serve_gateway(port: int, encoder: str, token: str | None) -> None:
    """Run the real gateway app with a static catalog (one Ready SamModel, one encoder pod)."""
    from aiohttp import web
    from sam_gateway.app import create_app
    from sam_gateway.catalog import Catalog
    from sam_gateway.settings import GatewaySettings

    settings = GatewaySettings(
        host="127.0.0.1", port=port, direct_enabled=False, pod_address_annotation=ANNOTATION, token=token
    )
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    labels = {
        "app.kubernetes.io/name": "sam-encoder",
        "app.kubernetes.io/instance": "soak",
        "app.kubernetes.io/component": "encoder",
    }
    catalog.upsert_model(
        {
            "apiVersion": "samoperator.io/v1alpha1",
            "kind": "SamModel",
            "metadata": {
                "name": "soak",
                "namespace": "bench",
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "resourceVersion": "1",
                "generation": 1,
            },
            "spec": {"model": {"variant": "vit_h"}},
            "status": {
                "observedGeneration": 1,
                "replicas": 1,
                "readyReplicas": 1,
                "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
                "cvat": {
                    "enabled": True,
                    "functionName": FUNCTION,
                    "mode": "embedding",
                    "description": "soak",
                    "annotations": {"name": "Segment Anything", "type": "interactor", "version": "2"},
                },
            },
        }
    )
    catalog.upsert_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "soak-0",
                "namespace": "bench",
                "labels": labels,
                "annotations": {ANNOTATION: encoder},
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    try:  # as `sam-gateway` does at its start (an older sam_gateway on PYTHONPATH has no allocator module)
        from sam_gateway.allocator import tune_malloc
    except ImportError:
        print("sam_gateway without allocator.tune_malloc: glibc's default malloc thresholds", file=sys.stderr)
    else:
        tune_malloc()
    web.run_app(create_app(settings, catalog), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    serve_gateway(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
