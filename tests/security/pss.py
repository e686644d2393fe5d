"""A checker of the Pod Security Standard `restricted` profile (Kubernetes v1.34 rules) for pod specs, plus the
project's stricter rules (read-only root filesystem everywhere). Used on rendered pod templates offline; the
admission test proves the same against the real API server."""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def all_containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]


def restricted_violations(pod: dict[str, Any], *, read_only_root: bool = True) -> list[str]:
    """Every way ``pod`` (a PodSpec dict) breaks `restricted` (empty when it complies)."""
    problems: list[str] = []
    pod_ctx = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"pod: {key}")
    if pod.get("hostUsers") is False:
        pass  # user namespaces are allowed
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']}: {sorted(kinds - ALLOWED_VOLUME_TYPES)}")
    for sysctl in pod_ctx.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            problems.append(f"pod: sysctl {sysctl['name']}")
    if pod_ctx.get("runAsUser") == 0:
        problems.append("pod: runAsUser 0")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"pod: seccomp {pod_seccomp}")
    for container in all_containers(pod):
        name = container["name"]
        ctx = container.get("securityContext") or {}
        if ctx.get("privileged"):
            problems.append(f"{name}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation != false")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: capabilities.add {caps['add']}")
        if not (
            ctx.get("runAsNonRoot") is True
            or (pod_ctx.get("runAsNonRoot") is True and ctx.get("runAsNonRoot") is not False)
        ):
            problems.append(f"{name}: runAsNonRoot not true")
        if ctx.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (ctx.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile {seccomp}")
        if ctx.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
        if read_only_root and ctx.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem != true")
    return problems
