"""The docs cannot drift: the generated SamModel reference is current, every example is a valid SamModel that
gets the CVAT function name the docs promise, relative links resolve, and `make` targets the docs name exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from contract.test_crds import _cel_failures, _validate
from sam_operator.cvat import derive_function_name
from sam_operator.resources import InvalidSpec, parse_sammodel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
DOCS = [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _gen_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "hack" / "gen-reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_reference_is_current() -> None:
    assert (ROOT / "docs" / "reference.md").read_text() == _gen_reference().render(), (
        "docs/reference.md is stale: run .venv/bin/python hack/gen-reference.py"
    )


def test_the_reference_names_every_spec_field_of_the_crd() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "sammodels.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    text = (ROOT / "docs" / "reference.md").read_text()
    assert all(f"| `spec.{name}` |" in text for name in spec)


def _load(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    return body


def test_there_are_the_six_documented_examples() -> None:
    assert [p.name for p in EXAMPLES] == [
        "01-vit-h-cvat-drop-in.yaml",
        "02-vit-b-masks.yaml",
        "03-cpu-only.yaml",
        "04-autoscaled.yaml",
        "05-sam2-hiera-t-cpu.yaml",
        "06-sam2-hiera-l-gpu.yaml",
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_the_crd_schema_and_cel_rules(example: Path) -> None:
    body = _load(example)
    _validate(body)
    assert _cel_failures(body) == []
    assert not isinstance(parse_sammodel(body), InvalidSpec)


@pytest.mark.parametrize(
    ("example", "function"),
    [
        ("01-vit-h-cvat-drop-in.yaml", "pth-facebookresearch-sam-vit-h"),
        ("02-vit-b-masks.yaml", "sam-vit-b"),
        ("03-cpu-only.yaml", "sam-cvat-sam-vit-b-cpu"),
        ("04-autoscaled.yaml", "pth-facebookresearch-sam-vit-h"),
        ("05-sam2-hiera-t-cpu.yaml", "sam-cvat-sam2-hiera-t-cpu"),
        ("06-sam2-hiera-l-gpu.yaml", "sam-cvat-sam2-hiera-l"),
    ],
)
def test_example_gets_the_cvat_function_name_the_readme_promises(example: str, function: str) -> None:
    model = parse_sammodel(_load(ROOT / "examples" / example))
    assert not isinstance(model, InvalidSpec)
    assert derive_function_name(model) == function
    assert f"`{function}`" in (ROOT / "examples" / "README.md").read_text()


def test_the_examples_cover_what_the_issue_asks() -> None:
    specs = {p.name: _load(p)["spec"] for p in EXAMPLES}
    assert specs["02-vit-b-masks.yaml"]["cvat"]["mode"] == "masks"
    assert specs["03-cpu-only.yaml"]["resources"]["gpus"] == 0
    assert specs["04-autoscaled.yaml"]["autoscaling"]["enabled"] is True
    assert specs["05-sam2-hiera-t-cpu.yaml"]["model"]["family"] == "sam2"
    assert specs["05-sam2-hiera-t-cpu.yaml"]["resources"]["gpus"] == 0
    assert specs["06-sam2-hiera-l-gpu.yaml"]["model"]["variant"] == "hiera_l"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    text = re.sub(r"`[^`\n]*`", "", doc.read_text())  # inline code (regex patterns) is not a link
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (doc.parent / target).exists():
            broken.append(target)
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_make_targets_named_in_the_docs_exist(doc: Path) -> None:
    targets = set(re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), re.M))
    named = set(re.findall(r"`make ([a-z][a-z_-]*)", doc.read_text()))
    assert named - targets == set()


def test_the_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands[:2] == ["make demo", "make test"]


# ---- images: the Dockerfiles agree with what runs them (no Docker here to build them) ----


def _dockerfile_user(path: Path) -> int:
    (user,) = re.findall(r"^USER (\d+):\d+$", path.read_text(), re.M)
    return int(user)


def test_the_operator_image_runs_as_the_user_the_chart_sets() -> None:
    values = yaml.safe_load((ROOT / "charts" / "sam-operator" / "values.yaml").read_text())
    user = _dockerfile_user(ROOT / "operator" / "Dockerfile")
    assert user == values["operator"]["podSecurityContext"]["runAsUser"]
    assert user == values["gateway"]["podSecurityContext"]["runAsUser"]


def test_the_encoder_image_runs_as_the_user_the_operator_renders() -> None:
    from sam_operator.render.deployment import RUN_AS_USER

    assert _dockerfile_user(ROOT / "inference" / "Dockerfile") == RUN_AS_USER


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~ \[;]", dep, maxsplit=1)[0].lower() for dep in requirements}


def test_the_operator_image_keeps_every_dependency_the_operator_imports() -> None:
    """operator/Dockerfile installs '.[operator]': the core dependencies plus that extra, never the ML stack.

    The image runs the operator and the gateway, and both import the shared contract package."""
    import ast
    import sys
    import tomllib

    assert "'.[operator]'" in (ROOT / "operator" / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = _requirement_names(project["dependencies"] + project["optional-dependencies"]["operator"])
    ml_stack = _requirement_names(project["optional-dependencies"]["inference"])
    assert not installed & ml_stack
    assert {"torch", "segment-anything"} <= ml_stack
    imports: set[str] = set()
    packages = {"sam_operator": "operator", "sam_gateway": "gateway", "sam_contract": "contract"}
    sources = [source for package, folder in packages.items() for source in (ROOT / folder / package).rglob("*.py")]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imports |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imports.add(node.module.split(".")[0])
    third_party = imports - set(sys.stdlib_module_names) - set(packages)
    # Import names that differ from their distribution's name, or come in with one (multidict, yarl: aiohttp's).
    provided = {
        "yaml": "pyyaml",
        "prometheus_client": "prometheus-client",
        "pydantic_settings": "pydantic-settings",
        "multidict": "aiohttp",
        "yarl": "aiohttp",
    }
    assert {provided.get(name, name) for name in third_party} <= installed, third_party


def test_the_images_built_here_are_the_chart_and_operator_defaults() -> None:
    """hack/build-images.sh tags ghcr.io/sam-operator/sam-<name>:<version>: a helm install with no image values
    and the operator's own default encoder image run exactly what was built."""
    import tomllib

    from sam_operator.settings import OperatorSettings

    script = (ROOT / "hack" / "build-images.sh").read_text()
    assert 'image_ref() { echo "ghcr.io/sam-operator/sam-$1"; }' in script
    assert re.search(r"^\s+operator\) build operator operator/Dockerfile", script, re.M)
    assert re.search(r"^\s+inference\) build inference inference/Dockerfile", script, re.M)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((ROOT / "charts" / "sam-operator" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "sam-operator" / "values.yaml").read_text())
    assert chart["appVersion"] == version
    assert (values["image"]["repository"], values["image"]["tag"]) == ("ghcr.io/sam-operator/sam-operator", "")
    assert values["operator"]["encoderImage"]["repository"] == "ghcr.io/sam-operator/sam-inference"
    assert values["operator"]["encoderImage"]["tag"] == ""  # empty: the chart's appVersion
    assert OperatorSettings().encoder_image == f"ghcr.io/sam-operator/sam-inference:{version}"
