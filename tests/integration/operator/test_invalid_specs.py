"""Invalid SamModels are rejected by the real API server (OpenAPI schema and CEL rules) with a clear message."""

from __future__ import annotations

import pytest
from fixtures.invalid_specs import INVALID_SPECS, InvalidCase, valid_body
from harness.cluster import Cluster
from kubernetes import client

pytestmark = pytest.mark.cluster


def create(cluster: Cluster, namespace: str, body: dict) -> None:
    cluster.custom().create_namespaced_custom_object("samoperator.io", "v1alpha1", namespace, "sammodels", body)


def test_the_table_has_at_least_ten_cases() -> None:
    assert len(INVALID_SPECS) >= 10


def test_the_valid_base_is_accepted(cluster: Cluster, namespace: str, sammodel_crd: None) -> None:
    create(cluster, namespace, valid_body("fine"))


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda c: c.id)
def test_invalid_spec_is_rejected_with_a_message_naming_the_field(
    cluster: Cluster, namespace: str, sammodel_crd: None, case: InvalidCase
) -> None:
    with pytest.raises(client.ApiException) as err:
        create(cluster, namespace, case.body)
    assert err.value.status == 422, err.value.body
    assert case.expected in err.value.body, f"{case.expected!r} not in {err.value.body}"
