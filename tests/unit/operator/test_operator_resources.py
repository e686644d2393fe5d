"""resources: the typed spec mirrors the CRD's defaults, and parsing never raises."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sam_operator.resources import InvalidSpec, SamModel, parse_quantity, parse_sammodel

CRD = Path(__file__).resolve().parents[3] / "crds" / "sammodels.yaml"


def minimal(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "m", "namespace": "ns", "generation": 5, "uid": "u"},
        "spec": {"model": {"checkpoint": {"url": "https://x/y.pth", "sha256": "f" * 64}}, **spec},
    }


def test_defaults_match_the_crd() -> None:
    parsed = parse_sammodel(minimal())
    assert isinstance(parsed, SamModel)
    spec = parsed.spec.model_dump(by_alias=True)
    schema = yaml.safe_load(CRD.read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]

    def check(node: dict[str, Any], value: dict[str, Any], path: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            default = sub.get("default")
            if isinstance(default, dict):
                assert {k: value[name][k] for k in default} == default, f"{path}.{name}"
            elif default is not None:
                assert value[name] == default, f"{path}.{name}"
            if sub.get("type") == "object" and isinstance(value.get(name), dict):
                check(sub, value[name], f"{path}.{name}")

    check(schema, spec, "spec")
    assert (parsed.name, parsed.namespace, parsed.generation) == ("m", "ns", 5)


@pytest.mark.parametrize(
    "body",
    [{}, {"spec": None}, {"spec": []}, {"metadata": {"generation": "x"}, "spec": {}}, {"spec": {"model": 3}}],
)
def test_garbage_becomes_invalid_spec(body: dict[str, Any]) -> None:
    parsed = parse_sammodel(body)
    assert isinstance(parsed, InvalidSpec) and parsed.reason == "InvalidSpec" and parsed.message.startswith("spec")


def test_error_messages_name_the_field() -> None:
    parsed = parse_sammodel(minimal(runtime={"maxBatchSize": 0}))
    assert isinstance(parsed, InvalidSpec)
    assert parsed.message.startswith("spec.runtime.maxBatchSize:")


def test_effective_replicas_clamps_only_with_autoscaling() -> None:
    def effective(**spec: Any) -> int:
        parsed = parse_sammodel(minimal(**spec))
        assert isinstance(parsed, SamModel)
        return parsed.spec.effective_replicas

    assert effective(replicas=7) == 7
    auto = {"enabled": True, "minReplicas": 2, "maxReplicas": 4, "targetQueueDepth": 1}
    assert effective(replicas=7, autoscaling=auto) == 4
    assert effective(replicas=1, autoscaling=auto) == 2


@pytest.mark.parametrize(
    ("text", "value"),
    [("1Gi", Decimal(2**30)), ("500m", Decimal("0.5")), (3, Decimal(3)), ("1.5G", Decimal(1_500_000_000))],
)
def test_parse_quantity(text: int | str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1 Gi", "-1", "1Gib", "lots"])
def test_parse_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(text)
