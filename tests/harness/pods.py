"""Runs the real processes of kwok pods: kwok marks pods Running but runs no containers.

For every Running pod of a selector, the runner executes the pod spec itself: each init container's command to
completion, then the ``encoder`` container's command with its environment, as local processes. Every volume
mount path (``/models``, ``/tmp``, ...) is rewritten to a folder of that pod, ``SAM_INFERENCE_HOST/PORT`` to a
free loopback port, and once ``/readyz`` answers the pod is annotated ``samoperator.io/test-address`` so that the
gateway (started with ``SAM_GATEWAY_POD_ADDRESS_ANNOTATION``) dials that address. Pods that go away have their
process stopped.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from harness.cluster import Cluster
from harness.processes import VENV_BIN, ManagedProcess, free_port

ADDRESS_ANNOTATION = "samoperator.io/test-address"
MAIN_CONTAINER = "encoder"


def _resolve(command: str) -> str:
    local = VENV_BIN / command
    return str(local) if local.exists() else (shutil.which(command) or command)


class PodProcess:
    """The processes of one pod."""

    def __init__(self, pod: dict[str, Any], work: Path) -> None:
        self.pod = pod
        self.name: str = pod["metadata"]["name"]
        self.work = work / self.name
        self.port = free_port()
        self.main: ManagedProcess | None = None
        self.init_log: list[str] = []

    def _mounts(self, container: dict[str, Any]) -> dict[str, str]:
        mapping = {}
        for mount in container.get("volumeMounts") or []:
            local = self.work / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mapping[mount["mountPath"]] = str(local)
        return mapping

    @staticmethod
    def _rewrite(value: str, mounts: dict[str, str]) -> str:
        for mount_path in sorted(mounts, key=len, reverse=True):
            if value == mount_path or value.startswith(mount_path + "/"):
                return mounts[mount_path] + value[len(mount_path) :]
        return value

    def _argv_env(self, container: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
        mounts = self._mounts(container)
        command = list(container.get("command") or []) + list(container.get("args") or [])
        if not command:
            raise AssertionError(f"container {container['name']} of {self.name} has no command")
        argv = [_resolve(command[0])] + [self._rewrite(a, mounts) for a in command[1:]]
        env: dict[str, str] = {}
        for var in container.get("env") or []:
            if "value" not in var:
                raise AssertionError(f"env {var['name']} uses valueFrom, which the harness does not emulate")
            env[var["name"]] = self._rewrite(str(var["value"]), mounts)
        env["TMPDIR"] = mounts.get("/tmp", str(self.work))
        return argv, env

    def start(self) -> None:
        spec = self.pod["spec"]
        for init in spec.get("initContainers") or []:
            argv, env = self._argv_env(init)
            proc = subprocess.run(argv, env={**_base_env(), **env}, capture_output=True, text=True, timeout=600)
            self.init_log.append(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
            if proc.returncode != 0:
                raise AssertionError(f"init container {init['name']} of {self.name} failed:\n{self.init_log[-1]}")
        main = next(c for c in spec["containers"] if c["name"] == MAIN_CONTAINER)
        argv, env = self._argv_env(main)
        env.update(SAM_INFERENCE_HOST="127.0.0.1", SAM_INFERENCE_PORT=str(self.port))
        self.main = ManagedProcess(f"pod-{self.name}", argv, env, self.work).start()
        self.main.wait_http(f"http://127.0.0.1:{self.port}/readyz", timeout=180)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.main:
            self.main.stop()


def _base_env() -> dict[str, str]:
    import os

    return dict(os.environ)


class PodRunner:
    """Keeps one PodProcess per Running pod matching ``selector`` in ``namespace`` (background thread)."""

    def __init__(self, cluster: Cluster, namespace: str, selector: str, work: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.selector = selector
        self.work = work
        self.processes: dict[str, PodProcess] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="pod-runner", daemon=True)

    def __enter__(self) -> PodRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for proc in list(self.processes.values()):
            proc.stop()

    def _loop(self) -> None:
        starting: dict[str, threading.Thread] = {}
        while not self._stop.wait(0.3):
            try:
                pods = self.cluster.core().list_namespaced_pod(self.namespace, label_selector=self.selector).items
            except Exception as exc:  # the API may be restarting; try again
                self.errors.append(repr(exc))
                continue
            live = {}
            for pod in pods:
                if pod.status.phase == "Running" and not pod.metadata.deletion_timestamp:
                    live[pod.metadata.name] = self.cluster.api_client.sanitize_for_serialization(pod)
            for name, body in live.items():
                if name not in self.processes and name not in starting:
                    thread = threading.Thread(target=self._start_pod, args=(body,), daemon=True)
                    starting[name] = thread
                    thread.start()
            for name in [n for n, t in starting.items() if not t.is_alive()]:
                starting.pop(name)
            with self._lock:
                for name in [n for n in self.processes if n not in live]:
                    self.processes.pop(name).stop()

    def _start_pod(self, body: dict[str, Any]) -> None:
        proc = PodProcess(body, self.work)
        try:
            proc.start()
        except Exception as exc:
            self.errors.append(f"{proc.name}: {exc}")
            proc.stop()
            return
        with self._lock:
            self.processes[proc.name] = proc
        self.cluster.core().patch_namespaced_pod(
            proc.name, self.namespace, {"metadata": {"annotations": {ADDRESS_ANNOTATION: proc.address}}}
        )

    def ready(self, count: int) -> list[PodProcess]:
        """The processes once ``count`` pods are served (raises with the harness's errors otherwise)."""
        with self._lock:
            procs = [p for p in self.processes.values() if p.main and p.main.running]
        if self.errors and not procs:
            raise AssertionError("pod harness errors: " + "\n".join(self.errors[-3:]))
        return procs if len(procs) >= count else []

    def wait_ready(self, count: int, timeout: float = 240) -> list[PodProcess]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            procs = self.ready(count)
            if procs:
                return procs
            time.sleep(0.5)
        raise AssertionError(f"{count} pod processes not ready; errors: {self.errors[-3:]}")
