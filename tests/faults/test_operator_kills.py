"""SIGKILL the operator at random points while SamModels are created, updated and deleted; it must converge.

A seeded RNG (``SAM_FAULT_SEED``, printed) drives both the changes and the kill points. A kill point is either
"after the k-th API write of this operator process" (k = 0..4: before its first write, between the Deployment
and the Service, before the status patch, ...) or "after a random delay" (0-2 s). Changes are made while the
operator is dead as well as while it runs. After the last kill one operator is started and everything must
converge: exactly the children the operator renders for every live SamModel and nothing else, correct owner
references, one active ReplicaSet per Deployment and no two with the same template hash, no orphaned
ReplicaSet or pod, unique direct-mode ports, and every status Ready with observedGeneration == generation.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from harness.cluster import Cluster, wait_for
from harness.operator import RunningOperator, sammodel
from sam_operator.render import build_children
from sam_operator.settings import OperatorSettings

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KILLS = int(os.environ.get("SAM_FAULT_KILLS", "24"))
SEED = int(os.environ.get("SAM_FAULT_SEED", "20240608"))
NAMES = [f"k{i}" for i in range(6)]
CHILD_KINDS = {  # kind -> kubectl resource
    "Deployment": "deployments",
    "Service": "services",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "NetworkPolicy": "networkpolicies",
}


@dataclass
class Model:
    replicas: int
    max_batch_size: int

    def body(self, name: str) -> dict[str, Any]:
        return sammodel(name, replicas=self.replicas, runtime={"device": "cpu", "maxBatchSize": self.max_batch_size})


@dataclass
class Workload:
    """The SamModels the test wants, and the changes it made to get there."""

    cluster: Cluster
    namespace: str
    rng: random.Random
    models: dict[str, Model] = field(default_factory=dict)
    changes: Counter[str] = field(default_factory=Counter)

    def kubectl(self, *args: str, body: dict[str, Any] | None = None) -> None:
        self.cluster.kubectl(*args, "-n", self.namespace, input=json.dumps(body) if body else None)

    def change(self) -> None:
        live = sorted(self.models)
        free = [n for n in NAMES if n not in self.models]
        choices = (["create"] * 3 if free else []) + (["scale", "runtime", "runtime"] if live else [])
        choices += ["delete"] if len(live) > 2 else []
        op = self.rng.choice(choices)
        if op == "create":
            name = self.rng.choice(free)
            self.models[name] = Model(self.rng.randint(1, 3), self.rng.randint(1, 16))
            self.kubectl("create", "-f", "-", body=self.models[name].body(name))
        elif op == "delete":
            name = self.rng.choice(live)
            del self.models[name]
            self.kubectl("delete", "sammodel", name, "--wait=false")
        else:
            name = self.rng.choice(live)
            model = self.models[name]
            if op == "scale":
                model.replicas = self.rng.choice([r for r in (1, 2, 3) if r != model.replicas])
                patch: dict[str, Any] = {"spec": {"replicas": model.replicas}}
            else:
                model.max_batch_size = self.rng.choice([b for b in range(1, 17) if b != model.max_batch_size])
                patch = {"spec": {"runtime": {"maxBatchSize": model.max_batch_size}}}
            self.kubectl("patch", "sammodel", name, "--type=merge", "-p", json.dumps(patch))
        self.changes[op] += 1

    def changes_now(self, low: int, high: int) -> None:
        for _ in range(self.rng.randint(low, high)):
            self.change()


def kill_at_random_point(op: RunningOperator, rng: random.Random) -> str:
    """Wait for a random point of this operator's life, SIGKILL it there; describe the point."""
    if rng.random() < 0.6:
        k = rng.randint(0, 4)
        try:
            wait_for(lambda: op.writes() >= k, 4, interval=0.02, what=f"write {k}")
            point = f"after write {k}"
        except AssertionError:
            point = f"idle before write {k}"  # fewer writes were needed than k
    else:
        delay = rng.uniform(0, 2)
        time.sleep(delay)  # the fault itself: a random moment, not a condition to poll for
        point = f"after {delay:.2f}s"
    try:
        writes = int(op.writes())
    except OSError:
        writes = -1
    assert op.proc is not None and op.proc.running, f"the operator died by itself:\n{op.proc and op.proc.output()}"
    op.kill()
    return f"{point} ({writes} writes)"


def _owned(
    items: list[dict[str, Any]], parents: Container[str], what: str, out: list[str]
) -> Iterator[tuple[dict[str, Any], str]]:
    """Each item with its owner's uid, when it has exactly one owner among ``parents``; the rest go to ``out``."""
    for item in items:
        meta = item["metadata"]
        owners = meta.get("ownerReferences") or []
        if len(owners) != 1 or owners[0]["uid"] not in parents:
            out.append(f"orphaned {what} {meta['name']} (owners {owners})")
            continue
        yield item, owners[0]["uid"]


def problems(cluster: Cluster, namespace: str, workload: Workload, has_sm_api: bool) -> list[str]:
    """Everything that is not yet as it must be once converged (empty: converged)."""
    out: list[str] = []
    sams = {s["metadata"]["name"]: s for s in cluster.get_json("sammodels", "-n", namespace)["items"]}
    if set(sams) != set(workload.models):
        out.append(f"SamModels {sorted(sams)} != {sorted(workload.models)}")
    settings = OperatorSettings()
    expected: set[tuple[str, str]] = set()
    uid_of = {}
    for name, sam in sams.items():
        uid_of[name] = sam["metadata"]["uid"]
        expected |= {
            (c["kind"], c["metadata"]["name"]) for c in build_children(sam, settings, service_monitor_api=has_sm_api)
        }
    owners_by_uid = {sam["metadata"]["uid"]: name for name, sam in sams.items()}

    live_children: set[tuple[str, str]] = set()
    deployments: dict[str, dict[str, Any]] = {}
    for kind, resource in CHILD_KINDS.items():
        for item in cluster.get_json(resource, "-n", namespace)["items"]:
            meta = item["metadata"]
            if kind == "Service" and meta["name"] == "kubernetes":
                continue
            live_children.add((kind, meta["name"]))
            owners = meta.get("ownerReferences") or []
            if len(owners) != 1 or owners[0]["uid"] not in owners_by_uid or not owners[0].get("controller"):
                out.append(f"{kind}/{meta['name']} has owners {owners} (live SamModels {owners_by_uid})")
            if kind == "Deployment":
                deployments[meta["uid"]] = item
    if live_children != expected:
        out.append(f"missing {sorted(expected - live_children)}, unexpected {sorted(live_children - expected)}")

    # Deployments carry the spec; one active ReplicaSet each, no template hash twice; nothing orphaned.
    for deployment in deployments.values():
        owner = owners_by_uid.get(deployment["metadata"]["ownerReferences"][0]["uid"])
        model = workload.models.get(owner or "")
        if model is None:
            continue
        spec = deployment["spec"]
        env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0].get("env", [])}
        if spec["replicas"] != model.replicas or env.get("SAM_INFERENCE_MAX_BATCH_SIZE") != str(model.max_batch_size):
            out.append(
                f"deployment of {owner}: replicas {spec['replicas']}, batch "
                f"{env.get('SAM_INFERENCE_MAX_BATCH_SIZE')} != {model}"
            )
    replicasets: dict[str, dict[str, Any]] = {}
    active: Counter[str] = Counter()
    hashes: Counter[tuple[str, str]] = Counter()
    for rs, owner in _owned(cluster.get_json("replicasets", "-n", namespace)["items"], deployments, "ReplicaSet", out):
        meta = rs["metadata"]
        replicasets[meta["uid"]] = rs
        hashes[(owner, meta["labels"].get("pod-template-hash", ""))] += 1
        active[owner] += rs["spec"].get("replicas", 0) > 0
    out += [f"template hash {h} has {n} ReplicaSets" for (_, h), n in hashes.items() if n > 1]
    out += [
        f"Deployment {d['metadata']['name']} has {active[uid]} active ReplicaSets"
        for uid, d in deployments.items()
        if active[uid] != 1
    ]
    pods_of: Counter[str] = Counter()
    for pod, _ in _owned(cluster.get_json("pods", "-n", namespace)["items"], replicasets, "pod", out):
        pods_of[pod["metadata"]["labels"].get("app.kubernetes.io/instance", "")] += 1
    for name, model in workload.models.items():
        if pods_of[name] != model.replicas:
            out.append(f"{name} has {pods_of[name]} pods, wants {model.replicas}")

    # Status: Ready, current, counting the replicas; one direct-mode port each.
    ports: Counter[int] = Counter()
    for name, sam in sams.items():
        status = sam.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        if (
            status.get("observedGeneration") != sam["metadata"]["generation"]
            or ready.get("status") != "True"
            or status.get("readyReplicas") != sam["spec"]["replicas"]
        ):
            out.append(
                f"{name}: generation {sam['metadata']['generation']}, status "
                f"{status.get('observedGeneration')} ready {ready.get('status')}/{ready.get('reason')} "
                f"{status.get('readyReplicas')}/{sam['spec']['replicas']}"
            )
        port = (status.get("cvat") or {}).get("httpPort")
        if port:
            ports[port] += 1
        else:
            out.append(f"{name}: no direct-mode port")
    out += [f"direct-mode port {p} given to {n} SamModels" for p, n in ports.items() if n > 1]
    return out


def test_operator_killed_at_random_points_converges_without_duplicates_or_orphans(
    cluster: Cluster, namespace: str, start_operator: Callable[..., RunningOperator]
) -> None:
    rng = random.Random(SEED)
    workload = Workload(cluster, namespace, rng)
    has_sm_api = cluster.kubectl("get", "crd", "servicemonitors.monitoring.coreos.com", check=False).returncode == 0
    workload.changes_now(3, 4)
    points: list[str] = []
    started = time.monotonic()
    for _ in range(KILLS):
        op = start_operator(namespace)
        workload.changes_now(0, 2)
        points.append(kill_at_random_point(op, rng))
        workload.changes_now(0, 2)  # while no operator runs
    chaos_s = time.monotonic() - started

    final = start_operator(namespace)
    t0 = time.monotonic()
    last: list[str] = []

    def converged() -> bool:
        nonlocal last
        last = problems(cluster, namespace, workload, has_sm_api)
        return not last

    try:
        wait_for(converged, 180, interval=1, what="convergence after the last kill")
    except AssertionError:
        raise AssertionError(f"not converged after the last kill (seed {SEED}):\n" + "\n".join(last)) from None
    converge_s = time.monotonic() - t0
    assert final.proc is not None and final.proc.running

    # Converged means quiet: a few more resync rounds write nothing.
    settled = final.writes()
    before = final.metric("sam_operator_reconcile_total", result="success")
    wait_for(
        lambda: final.metric("sam_operator_reconcile_total", result="success") >= before + 2 * len(workload.models),
        60,
        what="two more resync rounds",
    )
    assert final.writes() == settled, "the converged operator kept writing"
    assert not problems(cluster, namespace, workload, has_sm_api)

    mid_write = sum(1 for p in points if p.startswith("after write") and not p.startswith("after write 0"))
    print(
        f"\n[faults] operator SIGKILLed at {len(points)} points (seed {SEED}), {mid_write} after k>0 writes; "
        f"changes {dict(workload.changes)}; chaos {chaos_s:.0f}s; converged {converge_s:.1f}s after the final "
        f"start with {len(workload.models)} SamModels; kill points: {points}"
    )
    assert len(points) >= 20
