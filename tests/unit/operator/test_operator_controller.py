"""Reconciles from the watch-fed store, without a cluster: API calls per reconcile, events that make work, echoes.

The fake is at our own boundary (``sam_operator.kube.Kube``): ``harness.fake_kube.MemoryKube`` counts calls and
keeps what was written, so the tests can assert how many API requests one reconcile makes and that this does not
grow with the SamModels.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from typing import Any

from harness.fake_kube import MemoryKube
from sam_operator.controller import Controller, spec_changed
from sam_operator.informer import Informer
from sam_operator.ports import status_port
from sam_operator.reconcile import Reconciler
from sam_operator.settings import OperatorSettings
from sam_operator.store import Store

SETTINGS = OperatorSettings(direct_port_base=40000, direct_port_range_size=2000, coalesce_seconds=0.05)


def sammodel(name: str, port: int | None = None, generation: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "generation": generation,
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {
            "model": {"variant": "vit_b", "checkpoint": {"url": "https://x/b.pth", "sha256": "0" * 64}},
            "runtime": {"device": "cpu"},
            "resources": {"gpus": 0},
        },
    }
    if port is not None:
        body["status"] = {"cvat": {"httpPort": port}}
    return body


def reconciler_with(others: int) -> tuple[Reconciler, MemoryKube]:
    kube = MemoryKube()
    rec = Reconciler(kube, SETTINGS, Store(), watched=lambda kind: True)  # type: ignore[arg-type]
    for i in range(others):
        body = sammodel(f"other-{i}", port=40000 + i)
        rec.store.put("SamModel", body)
        rec.ports.observe(("ns", body["metadata"]["name"]), body)
    target = sammodel("target")
    kube.objects[("SamModel", "ns", "target")] = target
    rec.store.put("SamModel", target)
    return rec, kube


def test_one_reconcile_makes_the_same_api_calls_with_one_or_a_thousand_other_sammodels() -> None:
    counts = []
    for others in (1, 1000):
        rec, kube = reconciler_with(others)
        rec.reconcile("ns", "target")
        first = Counter(kube.calls)
        rec.reconcile("ns", "target")  # converged: the store holds every write's response
        counts.append((first, kube.calls - first))
    (first_small, again_small), (first_big, again_big) = counts
    assert first_small == first_big == Counter(apply=2, patch_status=1, has_api=1)  # Deployment, Service, status
    assert again_small == again_big == Counter(has_api=1)  # no GET, no LIST, no write


def test_a_new_sammodel_gets_its_deployment_first_and_the_rest_in_a_prompt_second_pass() -> None:
    rec, kube = reconciler_with(2)
    later: list[tuple[str, str]] = []
    rec.continue_later = later.append
    rec.reconcile("ns", "target")
    assert kube.calls["apply"] == 1 and kube.calls["patch_status"] == 0
    assert ("Deployment", "ns", "sam-target") in kube.objects and later == [("ns", "target")]
    rec.reconcile("ns", "target")  # the second pass: Service and status
    assert kube.calls["apply"] == 2 and kube.calls["patch_status"] == 1
    assert ("Service", "ns", "sam-target") in kube.objects and later == [("ns", "target")]


def test_an_operator_restarted_on_a_converged_cluster_writes_nothing() -> None:
    rec, kube = reconciler_with(3)
    rec.reconcile("ns", "target")
    writes = kube.calls["apply"] + kube.calls["patch_status"]
    fresh = Controller(kube, SETTINGS)  # type: ignore[arg-type]
    for informers in fresh.informers.values():  # what a new process lists at startup
        for informer in informers:
            informer._relist()
    assert fresh.watched("Deployment") and fresh.watched("SamModel")
    fresh.reconciler.reconcile("ns", "target")
    assert kube.calls["apply"] + kube.calls["patch_status"] == writes
    assert kube.calls["get"] == 0
    fresh.stop()


def test_the_port_avoids_every_port_the_others_hold_without_listing_them() -> None:
    rec, kube = reconciler_with(300)
    rec.reconcile("ns", "target")
    port = status_port(rec.store.get("SamModel", "ns", "target"))
    assert port is not None and not 40000 <= port < 40300
    assert kube.calls["list"] == 0


def test_status_only_changes_make_no_work_and_spec_changes_do() -> None:
    old = sammodel("a", port=40001)
    status_only = copy.deepcopy(old)
    status_only["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    status_only["metadata"]["resourceVersion"] = "2"
    assert not spec_changed(old, status_only)
    assert spec_changed(old, sammodel("a", port=40001, generation=2))
    labelled = copy.deepcopy(old)
    labelled["metadata"]["labels"] = {"team": "x"}
    assert spec_changed(old, labelled)


def test_children_and_pod_events_are_mapped_to_their_owner_and_coalesced() -> None:
    controller = Controller(MemoryKube(), SETTINGS)  # type: ignore[arg-type]
    handled: list[Any] = []
    controller.queue._handler = handled.append  # observe which keys run
    controller.store.put("SamModel", sammodel("a"))
    owned = {"kind": "SamModel", "name": "a", "uid": "uid-a", "controller": True}
    deployment = {"metadata": {"name": "sam-a", "namespace": "ns", "resourceVersion": "5", "ownerReferences": [owned]}}
    for i in range(20):  # a burst of status events of the Deployment and its pod
        controller.on_change("Deployment", {**deployment, "status": {"i": i}}, deployment)
        pod = {"metadata": {"name": "sam-a-x", "namespace": "ns", "labels": {"app.kubernetes.io/instance": "a"}}}
        controller.on_change("Pod", pod, None)
    controller.on_change("SamModel", sammodel("a"), sammodel("a"))  # nothing but bookkeeping changed
    controller.queue.open()
    deadline = time.monotonic() + 5
    while not (handled and controller.queue.idle()) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert handled == [("ns", "a")]
    controller.stop()


def test_the_informer_ignores_the_echo_of_an_own_write_and_reports_real_changes() -> None:
    kube = MemoryKube()
    store = Store()
    seen: list[tuple[str, str | None, str | None]] = []

    def rv(body: dict[str, Any] | None) -> str | None:
        return body["metadata"]["resourceVersion"] if body else None

    def on_change(kind: str, new: dict[str, Any] | None, old: dict[str, Any] | None) -> None:
        seen.append((kind, rv(new), rv(old)))

    existing = {"metadata": {"name": "sam-a", "namespace": "ns", "uid": "d", "resourceVersion": "7"}}
    kube.objects[("Deployment", "ns", "sam-a")] = existing
    informer = Informer(kube, store, "apps/v1", "Deployment", on_change)  # type: ignore[arg-type]
    ours = {"metadata": {"name": "sam-a", "namespace": "ns", "uid": "d", "resourceVersion": "8"}}
    informer.start()
    assert informer.synced.wait(5)
    store.put("Deployment", ours)  # write-through of our own apply
    kube.events = [
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
        {"type": "MODIFIED", "object": ours},  # the echo: the reconciler stored the response already
        {"type": "MODIFIED", "object": {**ours, "metadata": {**ours["metadata"], "resourceVersion": "9"}}},
        {"type": "DELETED", "object": {**ours, "metadata": {**ours["metadata"], "resourceVersion": "10"}}},
    ]
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    informer.stop()
    assert informer.available
    assert seen[0] == ("Deployment", "7", None)  # listed
    assert seen[1:] == [("Deployment", "9", "8"), ("Deployment", None, "9")]  # no event for "8"
    assert store.get("Deployment", "ns", "sam-a") is None
