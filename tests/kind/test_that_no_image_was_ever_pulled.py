"""Nothing in the kind cluster tried to pull an image: every image was built here and pre-loaded, and every pod's
pull policy left the kubelet nothing to fetch (a pull is a lookup of a registry host this machine must not reach).
Its file name sorts after the other kind modules (pytest runs files in that order), so it sees all their pods.
"""

from __future__ import annotations

import pytest
from harness.kind_release import Kind, Model

pytestmark = [pytest.mark.kind]

PULL_EVENT_REASONS = {"Pulling", "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "BackOff"}


def test_no_pod_in_the_cluster_tried_to_pull_an_image(kind: Kind, embedding_model: Model, masks_model: Model) -> None:
    events = kind.cluster.get_json("events", "-A")["items"]
    pulls = [
        (e["involvedObject"].get("name"), e["reason"], e.get("message", ""))
        for e in events
        if e["reason"] in PULL_EVENT_REASONS and "image" in e.get("message", "").lower()
    ]
    assert not pulls, pulls
    present = [e for e in events if e["reason"] == "Pulled"]
    # The kubelet did look up images, and found each one already present.
    assert present and all("already present on machine" in e.get("message", "") for e in present), present[:3]
    for pod in kind.cluster.get_json("pods", "-A")["items"]:
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            assert container.get("imagePullPolicy") in ("Never", "IfNotPresent"), (pod["metadata"]["name"], container)
