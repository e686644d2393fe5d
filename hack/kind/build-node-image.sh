#!/usr/bin/env bash
# The kind node image, assembled offline (what kindest/base + `kind build node-image` make, without a registry):
# the Debian node rootfs, kind's own base files from its Go module, Debian's containerd/runc/CNI plugins, the
# kubelet/kubeadm/kubectl that hack/build-tools.sh built, and every image the cluster runs pre-imported into
# containerd: control plane, etcd, kube-proxy, CoreDNS, pause (from Kubernetes' pause.c), the volume provisioner,
# busybox. Idempotent: kept while $NODE_IMAGE exists (podman rmi it to rebuild). Nothing here uses the network
# (--network none): a podman bridge would make netavark turn on the host's IP forwarding before kind-up records
# the host's state.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KIND_LOG_TAG=node-image
image_exists "$NODE_IMAGE" && exit 0
B=$SAM_K8S_BIN
for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubeadm kubectl etcd coredns crictl \
         local-path-provisioner; do
  [[ -x $B/$b ]] || { echo "missing $B/$b: run hack/build-tools.sh first" >&2; exit 1; }
done
bash "$KIND_DIR/build-base-images.sh"
t0=$SECONDS
W=$SAM_KIND_CACHE/node-build; rm -rf "$W"; mkdir -p "$W"
LOGS=$SAM_KIND_CACHE/logs

one_binary_image() { # image binary base
  local d=$W/img-$2; mkdir -p "$d"; cp "$B/$2" "$d/$2"
  {
    printf 'FROM %s\nENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin\n' "$3"
    printf 'COPY %s /usr/local/bin/%s\n' "$2" "$2"
    printf 'ENTRYPOINT ["/usr/local/bin/%s"]\n' "$2"
  } >"$d/Dockerfile"
  quiet "$LOGS/build-$2.log" podman build --network none -t "$1" "$d"
}
kind_log "control-plane, etcd, CoreDNS and volume-provisioner images from the binaries in $B"
one_binary_image "registry.k8s.io/kube-apiserver:$K8S_VERSION" kube-apiserver scratch
one_binary_image "registry.k8s.io/kube-controller-manager:$K8S_VERSION" kube-controller-manager scratch
one_binary_image "registry.k8s.io/kube-scheduler:$K8S_VERSION" kube-scheduler scratch
one_binary_image "registry.k8s.io/kube-proxy:$K8S_VERSION" kube-proxy "$NODE_BASE_IMAGE"   # iptables, conntrack
one_binary_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" etcd scratch
one_binary_image "$COREDNS_IMAGE" coredns scratch   # root: binds :53 without file capabilities
one_binary_image "$LOCAL_PATH_IMAGE" local-path-provisioner scratch
kind_log "pause image from Kubernetes' build/pause/linux/pause.c"
K8S_SRC=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION
[[ -d $K8S_SRC ]] || go mod download "k8s.io/kubernetes@$K8S_VERSION"
d=$W/img-pause; mkdir -p "$d"; cp "$K8S_SRC/build/pause/linux/pause.c" "$d/pause.c"; chmod u+w "$d/pause.c"
gcc -Os -Wall -Werror -static -DVERSION=v3.10.1 -o "$d/pause" "$d/pause.c"
printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile"
quiet "$LOGS/build-pause.log" podman build --network none -t "$PAUSE_IMAGE" "$d"
podman tag "$PAUSE_IMAGE" registry.k8s.io/pause:3.10   # kind's containerd config names 3.10 as the sandbox image

IMAGES=("registry.k8s.io/kube-apiserver:$K8S_VERSION" "registry.k8s.io/kube-controller-manager:$K8S_VERSION"
  "registry.k8s.io/kube-scheduler:$K8S_VERSION" "registry.k8s.io/kube-proxy:$K8S_VERSION"
  "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "$COREDNS_IMAGE" "$PAUSE_IMAGE" registry.k8s.io/pause:3.10 "$LOCAL_PATH_IMAGE" "$BUSYBOX_IMAGE")
podman save -q -m -o "$W/images.tar" "${IMAGES[@]}"

kind_log "node image $NODE_IMAGE (kind $KIND_VERSION base files, containerd with the images pre-imported)"
KIND_SRC=$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION
[[ -d $KIND_SRC ]] || go mod download "sigs.k8s.io/kind@$KIND_VERSION"
C=sam-node-build-$$
trap 'podman rm -f "$C" >/dev/null 2>&1 || true' EXIT
podman run -d --network none --name "$C" --entrypoint sleep --security-opt seccomp=unconfined "$NODE_BASE_IMAGE" infinity >/dev/null
podman cp "$KIND_SRC/images/base/files/." "$C:/"
for b in kubeadm kubelet kubectl; do podman cp "$B/$b" "$C:/usr/bin/$b"; done
podman cp "$B/crictl" "$C:/usr/local/bin/crictl"
podman cp "$W/images.tar" "$C:/images.tar"
podman exec "$C" mkdir -p /kind/manifests
podman cp "$KIND_DIR/manifests/default-cni.yaml" "$C:/kind/manifests/default-cni.yaml"
podman cp "$KIND_DIR/manifests/default-storage.yaml" "$C:/kind/manifests/default-storage.yaml"
quiet "$LOGS/node-image-setup.log" podman exec -i -e "K8S_VERSION=$K8S_VERSION" "$C" bash -euxo pipefail <<'EOS'
# permissions as in kind's Dockerfile (the files come from the read-only Go module cache)
find /kind /etc/systemd /etc/containerd /etc/sysctl.d /etc/default /LICENSES -type d -exec chmod 755 {} +
find /kind /etc/systemd/system /etc/containerd /etc/sysctl.d /LICENSES -type f -exec chmod 644 {} +
chmod 644 /etc/crictl.yaml /etc/default/kubelet
chmod 755 /usr/local/bin/* /kind/bin/* /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
# systemd clean-up, as in kind's Dockerfile
find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
ln -sf /usr/lib/systemd/systemd /sbin/init
# Debian's containerd 1.6 / runc / CNI plugins at the paths kind's units expect
ln -sf /usr/bin/containerd /usr/local/bin/containerd
ln -sf /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2
ln -sf /usr/bin/ctr /usr/local/bin/ctr
mkdir -p /usr/local/sbin && ln -sf /usr/sbin/runc /usr/local/sbin/runc
mkdir -p /opt/cni/bin && cp -a /usr/lib/cni/. /opt/cni/bin/
ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
   | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
systemctl enable kubelet.service containerd.service undo-mount-hacks.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests
echo -n "$K8S_VERSION" > /kind/version
# No CAP_SYS_RESOURCE on this host: runc cannot lower oom_score_adj (pause asks for -998) and every sandbox fails
# with "can't get final child's PID from pipe: EOF". Clamp containers' oom_score_adj instead.
sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml
# pre-load the images into containerd's k8s.io namespace (what `kind build node-image` does)
(containerd >/var/log/containerd-build.log 2>&1 &)
for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && break; sleep 1; done
ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - < /images.tar
ctr --namespace=k8s.io images list -q
pkill containerd; sleep 2
rm -f /images.tar /var/log/containerd-build.log
EOS
podman commit -q --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' --change 'CMD []' \
  --change 'ENV container=docker' --change 'STOPSIGNAL SIGRTMIN+3' "$C" "$NODE_IMAGE" >/dev/null
rm -rf "$W"
kind_log "node image ready ($((SECONDS - t0)) s): $(podman image inspect --format '{{.Size}}' "$NODE_IMAGE" | numfmt --to=iec)"
