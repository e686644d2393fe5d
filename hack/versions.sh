# Versions of the local test cluster's components, and where their binaries are cached.
# Sourced by the hack/ scripts; override any of them from the environment.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.21.4}
SAM_K8S_BIN=${SAM_K8S_BIN:-$HOME/.cache/sam-operator/k8s/$K8S_VERSION}
# The kind cluster (real containers): kind, and what its node image carries besides the Kubernetes binaries.
KIND_VERSION=${KIND_VERSION:-v0.33.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.1}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
LOCAL_PATH_VERSION=${LOCAL_PATH_VERSION:-v0.0.30}
