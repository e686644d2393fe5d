"""Catalog: which SamModels become functions, which pods are ready replicas, and at which address."""

from __future__ import annotations

from typing import Any

from sam_gateway.catalog import Catalog, parse_selector
from unit.gateway.gateway_samples import SAM_FUNCTION, pod, sammodel


def test_ready_cvat_enabled_model_is_listed_with_its_status_fields() -> None:
    catalog = Catalog()
    assert catalog.upsert_model(sammodel(http_port=32768, mode="embedding")) is True

    [function] = catalog.functions()
    assert function.name == SAM_FUNCTION
    assert function.namespace == "models"
    assert function.model_name == "vit-h"
    assert function.http_port == 32768
    assert function.mode == "embedding"
    assert function.annotations["type"] == "interactor"
    assert function.description.startswith("Interactive object segmentation")
    assert function.selector == {
        "app.kubernetes.io/name": "sam-encoder",
        "app.kubernetes.io/instance": "vit-h",
        "app.kubernetes.io/component": "encoder",
    }
    assert catalog.get(SAM_FUNCTION) == function


def test_model_that_is_not_ready_or_not_cvat_enabled_is_not_listed() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel("a", function_name="fa", ready=False))
    catalog.upsert_model(sammodel("b", function_name="fb", enabled=False))
    no_conditions = sammodel("c", function_name="fc")
    del no_conditions["status"]["conditions"]
    catalog.upsert_model(no_conditions)
    assert catalog.functions() == []


def test_model_leaves_when_it_stops_being_ready_and_comes_back() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel())
    assert catalog.upsert_model(sammodel(ready=False)) is True
    assert catalog.get(SAM_FUNCTION) is None
    assert catalog.upsert_model(sammodel()) is True
    assert catalog.get(SAM_FUNCTION) is not None
    assert catalog.upsert_model(sammodel()) is False  # no change, no notification


def test_deleted_model_is_removed() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel())
    assert catalog.delete_model("models", "vit-h") is True
    assert catalog.delete_model("models", "vit-h") is False
    assert catalog.functions() == []


def replicas_with(*pods: dict[str, Any]) -> list[str]:
    """The replicas of the sample function, in a catalog that holds exactly ``pods``."""
    catalog = Catalog()
    catalog.upsert_model(sammodel())
    for body in pods:
        catalog.upsert_pod(body)
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    return catalog.replicas(function)


def test_ready_running_pod_is_a_replica_at_pod_ip_and_encoder_port() -> None:
    assert replicas_with(pod("p1", ip="10.1.0.7")) == ["10.1.0.7:8080"]


def test_pods_that_are_pending_unready_terminating_or_without_ip_are_not_replicas() -> None:
    assert replicas_with(
        pod("pending", ip="10.0.0.1", phase="Pending"),
        pod("unready", ip="10.0.0.2", ready=False),
        pod("terminating", ip="10.0.0.3", terminating=True),
        pod("no-ip", ip=None),
        pod("good", ip="10.0.0.9"),
    ) == ["10.0.0.9:8080"]


def test_pods_of_other_models_or_namespaces_are_not_replicas() -> None:
    assert replicas_with(
        pod("other-model", instance="vit-b", ip="10.0.0.2"),
        pod("other-ns", namespace="elsewhere", ip="10.0.0.3"),
        pod("mine", ip="10.0.0.4"),
    ) == ["10.0.0.4:8080"]


def test_address_annotation_is_honoured_only_when_configured() -> None:
    annotated = pod("p1", ip="10.0.0.5", annotations={"samoperator.io/test-address": "127.0.0.1:41001"})
    off = Catalog()
    off.upsert_model(sammodel())
    off.upsert_pod(annotated)
    on = Catalog(pod_address_annotation="samoperator.io/test-address")
    on.upsert_model(sammodel())
    on.upsert_pod(annotated)
    function = on.get(SAM_FUNCTION)
    assert function is not None
    assert off.replicas(function) == ["10.0.0.5:8080"]
    assert on.replicas(function) == ["127.0.0.1:41001"]


def test_annotated_pod_without_ip_is_ready_when_annotation_is_honoured() -> None:
    # kwok pods may run without an IP; the test harness annotates their real address.
    catalog = Catalog(pod_address_annotation="samoperator.io/test-address")
    catalog.upsert_model(sammodel())
    catalog.upsert_pod(pod("p1", ip=None, annotations={"samoperator.io/test-address": "127.0.0.1:4000"}))
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    assert catalog.replicas(function) == ["127.0.0.1:4000"]


def test_pod_without_the_configured_annotation_is_never_dialled_at_its_ip() -> None:
    # With addresses coming from an annotation, the pod IP (not on this machine) must not be a fallback.
    catalog = Catalog(pod_address_annotation="samoperator.io/test-address")
    catalog.upsert_model(sammodel())
    catalog.upsert_pod(pod("p1", ip="10.0.0.5"))
    function = catalog.get(SAM_FUNCTION)
    assert function is None or catalog.replicas(function) == []


def test_pod_turning_unready_and_deleted_leaves_the_replica_set() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel())
    catalog.upsert_pod(pod("p1", ip="10.0.0.1"))
    catalog.upsert_pod(pod("p2", ip="10.0.0.2"))
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    assert catalog.upsert_pod(pod("p1", ip="10.0.0.1", ready=False)) is True
    assert catalog.replicas(function) == ["10.0.0.2:8080"]
    assert catalog.delete_pod("models", "p2") is True
    assert catalog.replicas(function) == []


def test_missing_selector_falls_back_to_instance_and_component_labels() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel(selector=None))
    catalog.upsert_pod(pod("p1", ip="10.0.0.1"))
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    assert function.selector == {
        "app.kubernetes.io/instance": "vit-h",
        "app.kubernetes.io/component": "encoder",
    }
    assert catalog.replicas(function) == ["10.0.0.1:8080"]


def test_set_based_selector_is_not_half_evaluated() -> None:
    assert parse_selector("app in (a,b)", "x") == {
        "app.kubernetes.io/instance": "x",
        "app.kubernetes.io/component": "encoder",
    }
    assert parse_selector("a==1,b=2", "x") == {"a": "1", "b": "2"}


def test_relist_replaces_state_and_drops_objects_deleted_while_disconnected() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel("gone", function_name="gone-fn"))
    catalog.upsert_pod(pod("gone-pod", instance="gone"))
    assert catalog.replace_models([sammodel()]) is True
    assert catalog.replace_pods([pod("p1")]) is True
    assert [f.name for f in catalog.functions()] == [SAM_FUNCTION]
    assert catalog.replace_models([sammodel()]) is False


def test_namespaced_relist_keeps_other_namespaces() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel("a", "ns1", function_name="fa"))
    catalog.upsert_model(sammodel("b", "ns2", function_name="fb"))
    catalog.replace_models([], namespace="ns1")
    assert [f.name for f in catalog.functions()] == ["fb"]


def test_function_name_clash_resolves_to_the_oldest_model() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel("young", "ns-a", created="2026-03-01T00:00:00Z"))
    catalog.upsert_model(sammodel("old", "ns-b", created="2026-01-01T00:00:00Z"))
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    assert function.model_key == ("ns-b", "old")
    assert len(catalog.functions()) == 1
    # Within a namespace, that namespace's model is the answer.
    scoped = catalog.get(SAM_FUNCTION, namespace="ns-a")
    assert scoped is not None
    assert scoped.model_key == ("ns-a", "young")


def test_by_port_finds_the_function_that_owns_a_direct_port() -> None:
    catalog = Catalog()
    catalog.upsert_model(sammodel("a", function_name="fa", http_port=32001))
    catalog.upsert_model(sammodel("b", function_name="fb", http_port=32002))
    found = catalog.by_port(32002)
    assert found is not None
    assert found.name == "fb"
    assert catalog.by_port(32003) is None


def test_synced_only_after_both_resources_listed() -> None:
    catalog = Catalog()
    catalog.mark_synced("sammodels")
    assert catalog.synced is False
    catalog.mark_synced("pods")
    assert catalog.synced is True
