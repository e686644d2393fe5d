"""Contract tests of crds/sammodels.yaml: structural-ish schema, documented fields, samples and printer columns.

Offline: OpenAPI validation with jsonschema (after applying the CRD's defaults, like the API server), and, where
the optional `celpy` (cel-python) package is importable, the CEL rules evaluated on the samples and on
tests/fixtures/invalid_specs.py. The same invalid specs run against the real API server in the integration tests.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from fixtures.invalid_specs import INVALID_SPECS, InvalidCase, valid_body
from sam_operator.resources import GROUP, KIND, PLURAL, SHORT_NAME, VERSION, InvalidSpec, parse_sammodel

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "sammodels.yaml"
SAMPLES = sorted((ROOT / "crds" / "samples").glob("*.yaml"))
_K8S_KEYS = ("x-kubernetes-validations", "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")


def _crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


def _version() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    return version


def _schema() -> dict[str, Any]:
    return _version()["schema"]["openAPIV3Schema"]


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def _to_jsonschema(schema: Any) -> Any:
    """OpenAPI v3 (k8s flavour) -> JSON Schema: int-or-string becomes a type union; k8s extensions dropped."""
    if isinstance(schema, list):
        return [_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _to_jsonschema(v) for k, v in schema.items() if not k.startswith("x-kubernetes") and k != "default"}
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out.setdefault("additionalProperties", False)
    return out


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Apply the schema's defaults the way the API server does (top-down, into defaulted objects too)."""
    if isinstance(obj, dict):
        result = dict(obj)
        for name, sub in (schema.get("properties") or {}).items():
            if name not in result and "default" in sub:
                result[name] = copy.deepcopy(sub["default"])
            if name in result:
                result[name] = apply_defaults(sub, result[name])
        return result
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in obj]
    return obj


def _validate(body: dict[str, Any]) -> None:
    schema = _to_jsonschema(_schema())
    schema["properties"]["metadata"] = {"type": "object"}
    jsonschema.validate(apply_defaults(_schema(), body), schema)


def test_crd_names_match_the_python_constants() -> None:
    crd = _crd()
    assert crd["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert crd["spec"]["group"] == GROUP
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (KIND, PLURAL, [SHORT_NAME])
    assert _version()["name"] == VERSION


def test_every_field_has_a_type_and_a_description() -> None:
    missing = []
    for path, node in _walk(_schema()):
        if path.endswith("{}"):
            continue  # map values (nodeSelector, annotations) are described by their map
        # The API server forbids anything but `type` on the root metadata schema.
        if not node.get("description") and path not in ("", ".metadata"):
            missing.append(f"{path}: description")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            missing.append(f"{path}: type")
    assert not [m for m in missing if m != ".spec.affinity: type"], missing


def test_schema_is_structural_no_forbidden_constructs() -> None:
    for path, node in _walk(_schema()):
        for forbidden in ("$ref", "oneOf", "not", "additionalItems", "uniqueItems"):
            assert forbidden not in node, f"{path} uses {forbidden}"
        if node.get("type") == "object" and "properties" in node:
            assert "additionalProperties" not in node, f"{path}: properties and additionalProperties together"


def test_status_and_scale_subresources() -> None:
    subresources = _version()["subresources"]
    assert subresources["status"] == {}
    assert subresources["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def _resolve(path: str) -> dict[str, Any] | None:
    node: dict[str, Any] = {"type": "object", "properties": {**_schema()["properties"]}}
    node["properties"]["metadata"] = {"type": "object", "properties": {"creationTimestamp": {"type": "string"}}}
    for part in re.findall(r"\.([A-Za-z]+)(\[\?\(.*?\)\])?", path):
        key, filter_ = part
        props = node.get("properties") or {}
        if key not in props:
            return None
        node = props[key]
        if filter_:
            node = node.get("items") or {}
            field = re.search(r"@\.([A-Za-z]+)", filter_)
            if field is None or field.group(1) not in (node.get("properties") or {}):
                return None
    return node


@pytest.mark.parametrize("column", _version()["additionalPrinterColumns"], ids=lambda c: c["name"])
def test_printer_columns_reference_existing_fields(column: dict[str, Any]) -> None:
    assert _resolve(column["jsonPath"]) is not None, column["jsonPath"]


def test_printer_columns_are_the_documented_ones() -> None:
    names = [c["name"] for c in _version()["additionalPrinterColumns"]]
    assert names == ["Model", "Ready", "Desired", "Status", "Function", "Age"]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_validates_against_the_schema(sample: Path) -> None:
    body = yaml.safe_load(sample.read_text())
    assert body["apiVersion"] == f"{GROUP}/{VERSION}" and body["kind"] == KIND
    _validate(body)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_parses_into_the_typed_spec(sample: Path) -> None:
    assert not isinstance(parse_sammodel(yaml.safe_load(sample.read_text())), InvalidSpec)


def test_the_samples_cover_cpu_gpu_vit_h_and_masks_mode() -> None:
    specs = [yaml.safe_load(s.read_text())["spec"] for s in SAMPLES]
    assert any(s.get("runtime", {}).get("device") == "cpu" for s in specs)
    assert any(s["model"].get("variant") == "vit_h" and s.get("resources", {}).get("gpus", 1) >= 1 for s in specs)
    assert any(s["model"].get("variant") == "vit_b" and s.get("cvat", {}).get("mode") == "masks" for s in specs)


def test_the_invalid_spec_table_is_large_enough() -> None:
    assert len(INVALID_SPECS) >= 12
    assert len({c.id for c in INVALID_SPECS}) == len(INVALID_SPECS)


@pytest.mark.parametrize("case", [c for c in INVALID_SPECS if not c.cel], ids=lambda c: c.id)
def test_invalid_spec_is_rejected_by_openapi_validation(case: InvalidCase) -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validate(case.body)


@pytest.mark.parametrize(
    "case", [c for c in INVALID_SPECS if not c.expected.startswith("metadata")], ids=lambda c: c.id
)
def test_invalid_spec_is_rejected_by_the_operator_parser_with_the_same_words(case: InvalidCase) -> None:
    parsed = parse_sammodel(case.body)
    assert isinstance(parsed, InvalidSpec)
    assert case.expected in parsed.message


def test_cel_messages_name_a_field() -> None:
    for path, node in _walk(_schema()):
        for rule in node.get("x-kubernetes-validations") or ():
            assert re.match(r"^(spec|metadata)\.[A-Za-z]", rule["message"]), (path, rule["message"])


# ---- CEL, evaluated offline where cel-python is available (quantity() rules need the API server) ----


def _cel_rules() -> Iterator[tuple[list[str], dict[str, Any]]]:
    def walk(node: dict[str, Any], where: list[str]) -> Iterator[tuple[list[str], dict[str, Any]]]:
        for rule in node.get("x-kubernetes-validations") or ():
            yield where, rule
        for name, sub in (node.get("properties") or {}).items():
            yield from walk(sub, [*where, name])

    yield from walk(_schema(), [])


def _cel_failures(body: dict[str, Any]) -> list[str]:
    celpy = pytest.importorskip("celpy")
    from celpy import celtypes

    env = celpy.Environment()
    defaulted = apply_defaults(_schema(), body)
    failures = []
    for where, rule in _cel_rules():
        if "quantity(" in rule["rule"]:
            continue
        node: Any = defaulted
        for key in where:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            continue
        program = env.program(env.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(node)})
        if result != celtypes.BoolType(True):
            failures.append(" ".join(rule["message"].split()))
    return failures


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_samples_pass_the_cel_rules(sample: Path) -> None:
    assert _cel_failures(yaml.safe_load(sample.read_text())) == []


@pytest.mark.parametrize("case", [c for c in INVALID_SPECS if c.cel and "limits" not in c.expected], ids=lambda c: c.id)
def test_invalid_spec_fails_its_cel_rule(case: InvalidCase) -> None:
    assert any(case.expected in message for message in _cel_failures(case.body)), _cel_failures(case.body)


@pytest.mark.parametrize("precision", ["auto", "float32", "bfloat16", "int8"])
def test_openvino_on_the_cpu_is_accepted_in_each_precision_it_computes(precision: str) -> None:
    body = valid_body("openvino-" + precision)
    body["spec"]["runtime"].update(engine="openvino", precision=precision)
    _validate(body)
    assert _cel_failures(body) == []
    assert not isinstance(parse_sammodel(body), InvalidSpec)
