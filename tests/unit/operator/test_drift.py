"""needs_apply: skip writes exactly when the live object already has every field we render."""

from __future__ import annotations

import copy

from sam_operator.drift import contains, needs_apply

DESIRED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "sam-x", "namespace": "ns", "labels": {"a": "b"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {"containers": [{"name": "encoder", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}},
    },
}


def live_with_server_defaults() -> dict:
    live = copy.deepcopy(DESIRED)
    live["metadata"].update(resourceVersion="7", uid="u", generation=3, managedFields=[{}])
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["resources"]["limits"]["nvidia.com/gpu"] = "1"  # quantities read back as strings
    live["spec"]["revisionHistoryLimit"] = 10
    live["status"] = {"replicas": 2}
    return live


def test_missing_object_needs_apply() -> None:
    assert needs_apply(DESIRED, None)


def test_server_defaults_and_normalised_quantities_are_not_drift() -> None:
    assert not needs_apply(DESIRED, live_with_server_defaults())


def test_changed_field_is_drift() -> None:
    live = live_with_server_defaults()
    live["spec"]["replicas"] = 3
    assert needs_apply(DESIRED, live)


def test_changed_label_is_drift() -> None:
    live = live_with_server_defaults()
    live["metadata"]["labels"]["a"] = "c"
    assert needs_apply(DESIRED, live)


def test_list_length_change_is_drift() -> None:
    live = live_with_server_defaults()
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert needs_apply(DESIRED, live)


def test_booleans_are_not_confused_with_numbers() -> None:
    assert not contains({"x": True}, {"x": 1})
    assert not contains({"x": 1}, {"x": "true"})
    assert contains({"x": 8080}, {"x": "8080"})
