"""store.Store and ports.PortBook: watch-fed state, echoes of own writes, relists, pods by owner, port holders."""

from __future__ import annotations

import threading
from typing import Any

from sam_operator.ports import PortBook, allocate_http_port
from sam_operator.store import Store, trim


def obj(name: str, rv: str, ns: str = "ns", uid: str = "u", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid,
            "resourceVersion": rv,
            "managedFields": [{"manager": "x"}],
            **extra,
        },
        "spec": {"n": rv},
    }


def pod(name: str, instance: str, rv: str = "1") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": name,
            "resourceVersion": rv,
            "labels": {"app.kubernetes.io/instance": instance},
        },
        "spec": {"nodeName": "n1", "containers": [{"name": "encoder", "image": "big"}]},
        "status": {"phase": "Running"},
    }


def test_the_echo_of_an_own_write_and_older_copies_are_not_changes() -> None:
    store = Store()
    assert store.put("Deployment", obj("sam-a", "10"))[0]
    assert store.put("Deployment", obj("sam-a", "10")) == (False, store.get("Deployment", "ns", "sam-a"))
    changed, _ = store.put("Deployment", obj("sam-a", "9"))  # a watch event that raced our write's response
    assert not changed and store.get("Deployment", "ns", "sam-a")["spec"] == {"n": "10"}  # type: ignore[index]
    assert store.put("Deployment", obj("sam-a", "11"))[0]
    assert store.put("Deployment", obj("sam-a", "3", uid="new"))[0]  # recreated: another object


def test_stored_copies_drop_managed_fields_and_pods_keep_only_what_status_reads() -> None:
    assert "managedFields" not in trim("Deployment", obj("a", "1"))["metadata"]
    kept = trim("Pod", pod("p", "a"))
    assert kept["spec"] == {"nodeName": "n1"} and kept["status"] == {"phase": "Running"}


def test_a_relist_drops_what_is_gone_in_its_namespace_only() -> None:
    store = Store()
    for name, ns in (("a", "ns"), ("b", "ns"), ("c", "other")):
        store.put("Service", obj(name, "1", ns=ns))
    changes = store.replace("Service", [obj("a", "1"), obj("d", "2")], namespace="ns")
    assert sorted(store.keys("Service")) == [("ns", "a"), ("ns", "d"), ("other", "c")]
    dropped = [old["metadata"]["name"] for new, old in changes if new is None and old is not None]
    added = [new["metadata"]["name"] for new, old in changes if new is not None and old is None]
    assert dropped == ["b"] and added == ["d"]  # "a" did not change: no event for it


def test_pods_are_found_by_their_sammodel_and_follow_label_changes() -> None:
    store = Store()
    store.put("SamModel", obj("a", "1"))
    store.put("Pod", pod("p1", "a"))
    store.put("Pod", pod("p2", "a"))
    store.put("Pod", pod("q1", "b"))
    assert sorted(p["metadata"]["name"] for p in store.pods("ns", "a")) == ["p1", "p2"]
    assert store.owner_of_pod(pod("p1", "a")) == "a"
    store.put("Pod", pod("p2", "b", rv="2"))
    store.delete("Pod", "ns", "p1")
    assert store.pods("ns", "a") == []
    assert sorted(p["metadata"]["name"] for p in store.pods("ns", "b")) == ["p2", "q1"]


def sam(name: str, created: str, port: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": "ns", "uid": name, "creationTimestamp": created}}
    if port is not None:
        body["status"] = {"cvat": {"httpPort": port}}
    return body


def test_concurrent_port_decisions_never_pick_the_same_free_port() -> None:
    book = PortBook()
    decided: dict[str, int] = {}
    start = threading.Barrier(12)

    def reconcile(name: str) -> None:
        start.wait()
        key = ("ns", name)
        with book.lock:
            port = allocate_http_port(f"ns/{name}", book.holding(key, sam(name, "t")), 100, 12)
            assert port is not None
            book.decide(key, port)
            decided[name] = port

    threads = [threading.Thread(target=reconcile, args=(f"m{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(decided.values()) == list(range(100, 112))  # a range of 12 ports, all 12 used once


def test_a_contested_port_stays_with_the_senior_and_the_junior_is_told_to_move() -> None:
    book = PortBook()
    book.observe(("ns", "older"), sam("older", "2026-01-01T00:00:00Z", 40100))
    book.observe(("ns", "younger"), sam("younger", "2026-01-02T00:00:00Z", 40100))
    with book.lock:
        assert 40100 not in book.holding(("ns", "older"), sam("older", "2026-01-01T00:00:00Z", 40100))
        juniors = book.decide(("ns", "older"), 40100)
    assert juniors == [("ns", "younger")]
    with book.lock:
        holding = book.holding(("ns", "younger"), sam("younger", "2026-01-02T00:00:00Z", 40100))
        assert 40100 in holding and 40101 not in holding
        book.decide(("ns", "younger"), 40101)
    book.observe(("ns", "younger"), sam("younger", "2026-01-02T00:00:00Z", 40101))
    assert book.holders(40100) == {("ns", "older")}
    book.forget(("ns", "older"))
    assert book.holders(40100) == set()
