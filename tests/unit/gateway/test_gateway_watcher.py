"""Watcher logic without a cluster: list-then-watch, resourceVersion resume, 410 re-list, backoff, sync gating.

The list/watch callables are our own boundary (``kube_functions`` builds the real ones); the real API server is
exercised by the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

from sam_gateway.catalog import Catalog
from sam_gateway.settings import GatewaySettings
from sam_gateway.watcher import PODS, SAMMODELS, Changed, ClusterWatcher, Message, Relisted, ResourceWatch
from unit.gateway.gateway_samples import SAM_FUNCTION, pod, sammodel


class _Gone(Exception):
    status = 410


def _with_version(body: dict[str, Any], version: str) -> dict[str, Any]:
    body["metadata"]["resourceVersion"] = version
    return body


def test_lists_then_watches_from_the_list_version_and_resumes_from_the_last_event() -> None:
    messages: list[Message] = []
    watch_versions: list[str] = []
    calls = {"list": 0}

    def list_fn() -> tuple[list[dict[str, Any]], str]:
        calls["list"] += 1
        return [sammodel()], "10"

    def watch_fn(version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        watch_versions.append(version)
        if len(watch_versions) == 1:
            yield {"type": "MODIFIED", "object": _with_version(sammodel(ready=False), "11")}
            yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}
            return  # server-side timeout: watch again from 15
        watcher.stop()
        yield {"type": "DELETED", "object": _with_version(sammodel(), "16")}

    watcher = ResourceWatch(SAMMODELS, None, list_fn, watch_fn, messages.append)
    watcher.run()

    assert calls["list"] == 1
    assert watch_versions == ["10", "15"]
    assert isinstance(messages[0], Relisted)
    assert [m.kind for m in messages[1:] if isinstance(m, Changed)] == ["MODIFIED", "DELETED"]


def test_gone_relists_and_errors_back_off_then_resume() -> None:
    messages: list[Message] = []
    script = iter(["gone-exception", "error-event", "transient", "stop"])
    versions: list[str] = []
    lists = {"n": 0}

    def list_fn() -> tuple[list[dict[str, Any]], str]:
        lists["n"] += 1
        return [], str(100 * lists["n"])

    def watch_fn(version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
        versions.append(version)
        step = next(script)
        if step == "gone-exception":
            raise _Gone("too old")
        if step == "error-event":
            yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
        if step == "transient":
            raise ConnectionResetError("apiserver went away")
        watcher.stop()
        yield from ()

    watcher = ResourceWatch(PODS, "ns", list_fn, watch_fn, messages.append, backoff_initial_s=0.01)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    thread.join(timeout=5)
    assert not thread.is_alive()
    # 410 as an exception and as an ERROR event both re-list; a transient error resumes from the same version.
    assert versions == ["100", "200", "300", "300"]
    assert lists["n"] == 3
    assert all(isinstance(m, Relisted) and m.namespace == "ns" for m in messages)


async def test_cluster_watcher_applies_messages_and_reports_synced_after_every_scope() -> None:
    catalog = Catalog()
    changes: list[int] = []
    settings = GatewaySettings(namespaces=["a", "b"])
    watcher = ClusterWatcher(settings, catalog, on_change=lambda: changes.append(1))

    watcher.apply(Relisted(SAMMODELS, "a", [sammodel("m", "a")]))
    watcher.apply(Relisted(PODS, "a", [pod("p", namespace="a", instance="m", ip="10.0.0.1")]))
    assert catalog.synced is False  # namespace b not listed yet
    watcher.apply(Relisted(SAMMODELS, "b", []))
    watcher.apply(Relisted(PODS, "b", []))
    assert catalog.synced is True
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    assert catalog.replicas(function) == ["10.0.0.1:8080"]
    assert len(changes) == 2  # the two empty lists changed nothing

    watcher.apply(Changed(PODS, "DELETED", pod("p", namespace="a", instance="m")))
    assert catalog.replicas(function) == []
    watcher.apply(Changed(SAMMODELS, "MODIFIED", sammodel("m", "a", ready=False)))
    assert catalog.functions() == []
    watcher.apply(Changed(SAMMODELS, "ADDED", sammodel("m", "a")))
    watcher.apply(Changed(SAMMODELS, "DELETED", sammodel("m", "a")))
    assert catalog.functions() == []
    assert len(changes) == 6


async def test_cluster_watcher_threads_feed_the_catalog_on_the_event_loop() -> None:
    catalog = Catalog()
    changed = asyncio.Event()
    loop_thread: list[bool] = []

    def on_change() -> None:
        loop_thread.append(threading.current_thread() is threading.main_thread())
        changed.set()

    def fake_kube_functions(api: object, resource: str, namespace: str | None) -> tuple[Any, Any]:
        items = [sammodel()] if resource == SAMMODELS else [pod("p", ip="10.0.0.2")]

        def watch_fn(version: str, timeout_s: int) -> Iterator[dict[str, Any]]:
            stop.wait(1)
            yield from ()

        return (lambda: (items, "1")), watch_fn

    stop = threading.Event()
    watcher = ClusterWatcher(
        GatewaySettings(),
        catalog,
        on_change=on_change,
        api_client_factory=lambda: None,
        functions_factory=fake_kube_functions,
    )
    try:
        watcher.start(asyncio.get_running_loop())
        async with asyncio.timeout(5):
            while not catalog.synced:
                await changed.wait()
                changed.clear()
    finally:
        watcher.stop()
        stop.set()
    function = catalog.get(SAM_FUNCTION)
    assert function is not None
    assert catalog.replicas(function) == ["10.0.0.2:8080"]
    assert loop_thread and all(loop_thread)
