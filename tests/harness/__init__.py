"""Test harness: the local Kubernetes cluster, per-test namespaces, and processes standing in for kwok pods."""
