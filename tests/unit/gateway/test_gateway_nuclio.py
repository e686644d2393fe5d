"""Nuclio rendering: the function object CVAT's lambda manager reads (cvat-protocol §3.3, §10)."""

from __future__ import annotations

from sam_gateway.catalog import derive_function
from sam_gateway.nuclio import build_annotations, build_function, build_function_map
from unit.gateway.gateway_samples import SAM_ANNOTATIONS, SAM_FUNCTION, sammodel


def _function(**kwargs: object):  # type: ignore[no-untyped-def]
    function = derive_function(sammodel(**kwargs))  # type: ignore[arg-type]
    assert function is not None
    return function


def test_function_object_matches_the_cvat_protocol_example() -> None:
    rendered = build_function(_function(http_port=32768), "cvat", ["10.0.0.1:8080"])
    assert rendered == {
        "metadata": {
            "name": SAM_FUNCTION,
            "namespace": "models",
            "labels": {
                "nuclio.io/project-name": "cvat",
                "samoperator.io/sammodel": "vit-h",
                "samoperator.io/sammodel-namespace": "models",
            },
            "annotations": SAM_ANNOTATIONS,
            "resourceVersion": "100",
        },
        "spec": {
            "description": "Interactive object segmentation with Segment-Anything (vit_h)",
            "runtime": "python:3.10",
            "handler": "main:handler",
        },
        "status": {"state": "ready", "httpPort": 32768, "internalInvocationUrls": ["10.0.0.1:8080"]},
    }


def test_fields_cvat_requires_are_present_and_valid() -> None:
    rendered = build_function(_function(), "cvat")
    annotations = rendered["metadata"]["annotations"]
    assert all(isinstance(v, str) for v in annotations.values())
    assert annotations["type"] in {"detector", "interactor", "reid", "tracker"}
    assert int(annotations["version"]) >= 2
    assert int(annotations["min_pos_points"]) == 0
    assert int(annotations["min_neg_points"]) == 0
    assert bool(annotations["startswith_box_optional"]) is True
    assert rendered["spec"]["description"]
    assert isinstance(rendered["status"], dict)
    assert isinstance(rendered["status"]["httpPort"], int)


def test_annotations_are_strings_and_false_is_left_out() -> None:
    rendered = build_annotations(
        {
            "version": 2,
            "min_neg_points": -1,
            "startswith_box": False,
            "startswith_box_optional": True,
            "animated_gif": None,
            "legacy": "false",
            "spec": [{"id": 0, "name": "object"}],
            "name": "SAM",
        }
    )
    assert rendered == {
        "version": "2",
        "min_neg_points": "-1",
        "startswith_box_optional": "true",
        "spec": '[{"id": 0, "name": "object"}]',
        "name": "SAM",
    }
    assert "false" not in [v.lower() for v in rendered.values()]


def test_missing_description_falls_back_to_a_non_empty_string() -> None:
    model = sammodel()
    model["status"]["cvat"]["description"] = ""
    function = derive_function(model)
    assert function is not None
    assert build_function(function, "cvat")["spec"]["description"] == SAM_FUNCTION


def test_function_without_direct_port_has_a_status_but_no_http_port() -> None:
    rendered = build_function(_function(http_port=None), "cvat")
    assert rendered["status"] == {"state": "ready"}


def test_function_map_is_keyed_by_function_name() -> None:
    a = _function(name="a", function_name="fa")
    b = _function(name="b", function_name="fb")
    rendered = build_function_map([a, b], "cvat", {"fa": ["1.2.3.4:8080"]})
    assert list(rendered) == ["fa", "fb"]
    assert rendered["fa"]["metadata"]["name"] == "fa"
    assert rendered["fa"]["status"]["internalInvocationUrls"] == ["1.2.3.4:8080"]
    assert "internalInvocationUrls" not in rendered["fb"]["status"]
