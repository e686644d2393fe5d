#!/usr/bin/env python3
"""Operator at scale: N SamModels (ViT-B, CPU) created at once on the local kwok cluster. A benchmark, not a test.

For each N it starts a fresh local control plane (hack/cluster-up.sh into a temporary folder, kwok nodes sized
for N pods), installs the CRD, runs the operator as its console script (cluster-wide, default settings unless
``--operator-env`` says otherwise), creates N SamModels from 8 client threads, and prints:

- create → Deployment: p50 / p95 of (the benchmark's watch first sees sam-<name>) minus (its create returned);
- all Ready: from the first create until every SamModel has Ready=True;
- writes during convergence (``sam_operator_writes_total``) and reconciles (``sam_operator_reconcile_total``);
- an idle minute afterwards: the operator's writes and CPU seconds (utime+stime of its process, all threads);
- one edit among N: ``spec.replicas`` 1 → 2 on a few SamModels in turn, until the Deployment carries it (p50/max);
- peak RSS of the operator (VmHWM);
- API requests per reconcile, from the API server's own ``apiserver_request_total``: requests the operator makes
  (SamModel GET/LIST/status PATCH; child kinds GET/LIST/APPLY/PATCH/POST/DELETE; pod LIST) over convergence and
  idle minute, divided by the operator's reconciles in the same span. Discovery requests (``/api``, ``/apis/...``:
  empty resource label, every client) are counted apart.

Every phase is bounded (``--converge-timeout``, ``--edit-timeout``); a phase that runs out is reported with what
was reached. The operator and the cluster are stopped in ``finally`` (also on SIGTERM / Ctrl-C).

    .venv/bin/python bench/operator_scale.py                          # N = 10, 50, 200, 1000
    .venv/bin/python bench/operator_scale.py --counts 10,50 --idle-s 30
    .venv/bin/python bench/operator_scale.py --operator-src /tmp/before/operator --label before  # another tree
    .venv/bin/python bench/operator_scale.py --json /tmp/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from scale_harness import GROUP, NS, PLURAL, VERSION, Observer, Operator, apiserver_requests, nodes_manifest

ROOT = Path(__file__).resolve().parent.parent
HACK = ROOT / "hack"


def sammodel(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SamModel",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {
                "variant": "vit_b",
                "checkpoint": {
                    "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
                    "sha256": "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
                },
            },
            "runtime": {"device": "cpu", "maxBatchSize": 1},
            "resources": {"gpus": 0},
            "replicas": 1,
            "cvat": {"mode": "masks"},
        },
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Result:
    n: int
    deployments_seen: int = 0
    create_to_deployment_p50_s: float | None = None
    create_to_deployment_p95_s: float | None = None
    ready: int = 0
    all_ready_s: float | None = None  # None: not all Ready within the bound
    converge_writes: float = 0
    converge_reconciles: float = 0
    idle_s: float = 0
    idle_writes: float = 0
    idle_cpu_s: float = 0
    idle_reconciles: float = 0
    edit_latencies_s: list[float | None] = field(default_factory=list)
    peak_rss_mb: float = 0
    api_requests: float = 0
    api_requests_per_reconcile: float | None = None
    discovery_requests: float = 0
    notes: list[str] = field(default_factory=list)


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def run_one(n: int, args: argparse.Namespace, work: Path) -> Result:
    res = Result(n)
    (work / "nodes.yaml").write_text(nodes_manifest(n))
    env = {**os.environ, "SAM_CLUSTER_DIR": str(work / "cluster"), "SAM_CLUSTER_NODES": str(work / "nodes.yaml")}
    for var in ("P_ETCD", "P_PEER", "P_API", "P_KCM", "P_SCHED"):
        env.pop(var, None)
    op: Operator | None = None
    observer: Observer | None = None
    try:
        up = subprocess.run(["bash", str(HACK / "cluster-up.sh")], env=env, capture_output=True, text=True, timeout=300)
        if up.returncode:
            raise RuntimeError(f"cluster-up failed:\n{up.stdout}\n{up.stderr}")
        kubeconfig = work / "cluster" / "kubeconfig"
        kubectl = [
            str(
                Path(
                    subprocess.run(
                        ["bash", "-c", f"source {HACK}/versions.sh && echo $SAM_K8S_BIN"],
                        capture_output=True,
                        text=True,
                        check=True,
                    ).stdout.strip()
                )
                / "kubectl"
            ),
            "--kubeconfig",
            str(kubeconfig),
        ]
        subprocess.run(
            [*kubectl, "apply", "--server-side", "-f", str(ROOT / "crds" / "sammodels.yaml")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Established", "crd/sammodels.samoperator.io", "--timeout=60s"],
            check=True,
            capture_output=True,
        )
        subprocess.run([*kubectl, "create", "namespace", NS], check=True, capture_output=True)
        api = config.new_client_from_config(config_file=str(kubeconfig))
        api.configuration.connection_pool_maxsize = 16
        core = client.CoreV1Api(api)
        wait_until(lambda: bool(core.list_namespaced_service_account(NS).items), 60)
        op = Operator(kubeconfig, work / "operator.log", args.operator_src, dict(args.operator_env))
        op.wait_healthy()
        observer = Observer(api)
        time.sleep(1.0)  # the watches are established
        req0, disc0 = apiserver_requests(api)
        names = [f"m{i:04d}" for i in range(n)]
        created: dict[str, float] = {}
        custom = client.CustomObjectsApi(api)

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, sammodel(name))
            created[name] = time.monotonic()

        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, names))
        print(f"  [{n}] created {n} SamModels in {time.monotonic() - t0:.1f}s", flush=True)
        obs = observer

        def all_ready() -> bool:
            with obs.lock:
                return len(obs.ready) >= n and len(obs.deployment_seen) >= n

        converged = wait_until(all_ready, args.converge_timeout, 0.25)
        with obs.lock:
            res.ready, seen = len(obs.ready), dict(obs.deployment_seen)
        lat = [seen[m] - created[m] for m in names if m in seen]
        res.deployments_seen = len(lat)
        res.create_to_deployment_p50_s, res.create_to_deployment_p95_s = pct(lat, 0.5), pct(lat, 0.95)
        if converged:
            res.all_ready_s = time.monotonic() - t0
        else:
            res.notes.append(
                f"not converged within {args.converge_timeout:.0f}s: {res.ready}/{n} Ready, "
                f"{res.deployments_seen}/{n} Deployments"
            )
        print(f"  [{n}] converge phase over after {time.monotonic() - t0:.1f}s: {res.ready}/{n} Ready", flush=True)
        res.converge_writes = op.metric("sam_operator_writes_total")
        res.converge_reconciles = op.metric("sam_operator_reconcile_total")
        # Settle: wait (bounded) until no write for 5 s, then measure the idle minute.
        last, quiet_since, settle_end = res.converge_writes, time.monotonic(), time.monotonic() + args.settle_timeout
        while time.monotonic() < settle_end and time.monotonic() - quiet_since < 5:
            time.sleep(1)
            now = op.metric("sam_operator_writes_total")
            if now != last:
                last, quiet_since = now, time.monotonic()
        settled = time.monotonic() - quiet_since >= 5
        print(
            f"  [{n}] writes {'settled' if settled else 'still going after --settle-timeout'}: "
            f"{last - res.converge_writes:.0f} writes after all Ready",
            flush=True,
        )
        w0, c0, r0 = op.metric("sam_operator_writes_total"), op.cpu_s(), op.metric("sam_operator_reconcile_total")
        time.sleep(args.idle_s)
        res.idle_s = args.idle_s
        res.idle_writes = op.metric("sam_operator_writes_total") - w0
        res.idle_cpu_s = op.cpu_s() - c0
        res.idle_reconciles = op.metric("sam_operator_reconcile_total") - r0
        req1, disc1 = apiserver_requests(api)
        reconciles = op.metric("sam_operator_reconcile_total")
        res.api_requests, res.discovery_requests = req1 - req0, disc1 - disc0
        res.api_requests_per_reconcile = res.api_requests / reconciles if reconciles else None
        print(f"  [{n}] idle {args.idle_s:.0f}s: {res.idle_writes:.0f} writes, {res.idle_cpu_s:.1f}s CPU", flush=True)
        for i in range(args.edits):
            name = names[(i * 7919 + n // 2) % n]
            t_edit = time.monotonic()
            custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, {"spec": {"replicas": 2}})

            def edited(name: str = name) -> bool:
                with obs.lock:
                    return obs.replicas.get(name) == 2

            ok = wait_until(edited, args.edit_timeout, 0.02)
            res.edit_latencies_s.append(time.monotonic() - t_edit if ok else None)
        res.peak_rss_mb = op.peak_rss_mb()
        return res
    finally:
        if observer is not None:
            observer.stop.set()
        if op is not None:
            op.stop()
        subprocess.run(["bash", str(HACK / "cluster-down.sh")], env=env, capture_output=True, timeout=180)


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def table(results: list[Result], label: str) -> str:
    lines = [
        f"operator scale ({label})",
        "| N | create→Deployment p50 / p95 | all Ready | writes converging | "
        "idle minute: writes / CPU s | one edit → Deployment p50 (max) | peak RSS | API req / reconcile "
        "(discovery) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        edits = [e for e in r.edit_latencies_s if e is not None]
        missed = len(r.edit_latencies_s) - len(edits)
        edit = (f"{fmt(statistics.median(edits))} s ({fmt(max(edits))})" if edits else "-") + (
            f", {missed} timed out" if missed else ""
        )
        ready = f"{fmt(r.all_ready_s, '.1f')} s" if r.all_ready_s is not None else f"not in bound ({r.ready}/{r.n})"
        lines.append(
            f"| {r.n} | {fmt(r.create_to_deployment_p50_s)} / {fmt(r.create_to_deployment_p95_s)} s"
            f"{'' if r.deployments_seen == r.n else f' ({r.deployments_seen}/{r.n} seen)'} | {ready} | "
            f"{r.converge_writes:.0f} ({r.converge_reconciles:.0f} reconciles) | "
            f"{r.idle_writes:.0f} / {r.idle_cpu_s:.1f} s ({r.idle_reconciles:.0f} reconciles in {r.idle_s:.0f} s) | "
            f"{edit} | {r.peak_rss_mb:.0f} MB | {fmt(r.api_requests_per_reconcile, '.1f')} "
            f"({r.discovery_requests:.0f}) |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="10,50,200,1000")
    parser.add_argument("--idle-s", type=float, default=60.0)
    parser.add_argument("--edits", type=int, default=3)
    parser.add_argument("--converge-timeout", type=float, default=300.0, help="bound of create → all Ready")
    parser.add_argument("--settle-timeout", type=float, default=30.0, help="bound of the wait for 5 quiet seconds")
    parser.add_argument("--edit-timeout", type=float, default=60.0)
    parser.add_argument("--operator-src", default=None, help="PYTHONPATH for another sam_operator tree")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        type=lambda s: tuple(s.split("=", 1)),
        help="extra operator env, NAME=VALUE (repeatable)",
    )
    parser.add_argument("--label", default="this tree")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt("SIGTERM")))
    results: list[Result] = []
    try:
        for n in (int(c) for c in args.counts.split(",")):
            tmp = tempfile.mkdtemp(prefix=f"sam-scale-{n}-")  # kept: the operator's and the cluster's logs
            print(f"N={n}: starting a local cluster in {tmp}", flush=True)
            try:
                results.append(run_one(n, args, Path(tmp)))
            except Exception as exc:  # report what was measured for the other N
                print(f"  [{n}] failed: {exc!r}", flush=True)
                results.append(Result(n, notes=[f"failed: {exc!r}"]))
            print(table(results[-1:], args.label), flush=True)
    finally:
        print("\n" + table(results, args.label))
        for r in results:
            for note in r.notes:
                print(f"  N={r.n}: {note}")
        if args.json:
            Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
