"""Render catalog functions as Nuclio dashboard function objects, exactly as CVAT's lambda manager reads them.

Pure. See shared cvat-protocol §3.3 and §10: ``metadata.{name,namespace,labels,annotations}`` with
annotations a map of **strings** (a boolean is switched off by leaving it out, never by ``"false"``, because
CVAT evaluates ``bool(str)``), ``spec.description`` always present, and a ``status`` object with ``state``
and ``httpPort``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sam_gateway.catalog import Function

PROJECT_LABEL = "nuclio.io/project-name"
MODEL_NAME_LABEL = "samoperator.io/sammodel"
MODEL_NAMESPACE_LABEL = "samoperator.io/sammodel-namespace"
RUNTIME = "python:3.10"
HANDLER = "main:handler"


def build_annotations(annotations: Mapping[str, Any]) -> dict[str, str]:
    """Nuclio annotations: all values strings; false/None/"false" dropped (CVAT reads ``bool(str)``)."""
    rendered: dict[str, str] = {}
    for key, value in annotations.items():
        if value is None or value is False:
            continue
        if isinstance(value, str):
            if value.strip().lower() == "false":
                continue
            rendered[str(key)] = value
        elif value is True:
            rendered[str(key)] = "true"
        elif isinstance(value, int | float):
            rendered[str(key)] = str(value)
        else:
            # e.g. a label list given as YAML for `spec`: CVAT json.loads() the string.
            rendered[str(key)] = json.dumps(value)
    return rendered


def build_function(function: Function, project: str, replicas: Sequence[str] = ()) -> dict[str, Any]:
    """One Nuclio function object (the value under its name in ``GET /api/functions``)."""
    status: dict[str, Any] = {"state": "ready"}
    if function.http_port:
        status["httpPort"] = function.http_port
    if replicas:
        status["internalInvocationUrls"] = list(replicas)
    metadata: dict[str, Any] = {
        "name": function.name,
        "namespace": function.namespace,
        "labels": {
            PROJECT_LABEL: project,
            MODEL_NAME_LABEL: function.model_name,
            MODEL_NAMESPACE_LABEL: function.namespace,
        },
        "annotations": build_annotations(function.annotations),
    }
    if function.resource_version:
        metadata["resourceVersion"] = function.resource_version
    return {
        "metadata": metadata,
        "spec": {
            # CVAT indexes spec["description"]: a missing key fails the whole list with a 500.
            "description": function.description or function.name,
            "runtime": RUNTIME,
            "handler": HANDLER,
        },
        "status": status,
    }


def build_function_map(
    functions: Iterable[Function], project: str, replicas: Mapping[str, Sequence[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """``GET /api/functions`` body: an object keyed by function name."""
    replicas = replicas or {}
    return {f.name: build_function(f, project, replicas.get(f.name, ())) for f in functions}
