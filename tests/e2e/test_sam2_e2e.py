"""SAM 2.1 (family sam2) end to end on the real local cluster: a SamModel with a random `hiera_micro`, its
checkpoint served on 127.0.0.1, the operator's pods run as local processes (``harness.pods.PodRunner``), and
CVAT-shaped calls through the gateway. A CVAT interaction (each call carries every click so far) gets masks
equal to the refinement chain in PyTorch (`SAM2ImagePredictor.predict` fed the previous low-res mask)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness.cluster import Cluster, wait_for
from harness.cvat import CvatClient, decode_cvat_rle, interactor_payload, synthetic_image
from harness.gateway import Gateway
from harness.pods import PodRunner
from harness.processes import http_get
from harness.sam import wait_condition
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

NAME = "tiny-sam2"
SELECTOR = f"app.kubernetes.io/component=encoder,app.kubernetes.io/instance={NAME}"
FILE_NAME = "sam2.1_hiera_micro.pt"
# One CVAT interaction: positives first, then negatives, each call with every click so far.
CLICKS = [((150.0, 110.0), 1), ((60.0, 50.0), 0), ((200.0, 140.0), 1)]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def sam2_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """(path, url, sha256) of the hiera_micro checkpoint served on a free loopback port."""
    from sam_inference.torch_models.tiny import write_tiny_checkpoint

    directory = tmp_path_factory.mktemp("sam2-checkpoints")
    sha256 = write_tiny_checkpoint(directory / FILE_NAME, seed=0, family="sam2")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, name="sam2-checkpoint-server", daemon=True).start()
    try:
        yield directory / FILE_NAME, f"http://127.0.0.1:{server.server_address[1]}/{FILE_NAME}", sha256
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def sam2_model(
    cluster: Cluster,
    e2e_namespace: str,
    gateway: Gateway,
    sam2_checkpoint: tuple[Path, str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, PodRunner]]:
    _, url, sha256 = sam2_checkpoint
    body = {
        "apiVersion": "samoperator.io/v1alpha1",
        "kind": "SamModel",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"family": "sam2", "variant": "hiera_micro", "checkpoint": {"url": url, "sha256": sha256}},
            "runtime": {"device": "cpu", "maxBatchSize": 1},
            "resources": {"gpus": 0},
            "cvat": {"mode": "masks", "displayName": "Tiny SAM 2.1 (masks)"},
        },
    }
    cluster.apply(body, e2e_namespace)
    with PodRunner(cluster, e2e_namespace, SELECTOR, tmp_path_factory.mktemp("pods-sam2")) as runner:
        sam = wait_condition(cluster, e2e_namespace, NAME, "Ready", "True", timeout=180)
        runner.wait_ready(1)
        yield sam["status"]["cvat"]["functionName"], runner


def _prompts(clicks: list[tuple[tuple[float, float], int]]) -> tuple[list[list[float]], list[list[float]]]:
    return [list(p) for p, label in clicks if label == 1], [list(p) for p, label in clicks if label == 0]


def _pytorch_chain(checkpoint: Path, rgb: np.ndarray) -> list[np.ndarray]:
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    from sam_inference.predictor import Prompts
    from sam_inference.torch_models.sam2_model import load_sam2
    from sam_inference.torch_models.sam_predictor import use_multimask

    predictor = SAM2ImagePredictor(load_sam2("hiera_micro", checkpoint))
    predictor.set_image(rgb)
    masks_out: list[np.ndarray] = []
    low_res_prev = None
    for k in range(1, len(CLICKS) + 1):
        pos, neg = _prompts(CLICKS[:k])
        points = np.array(pos + neg, dtype=np.float32)
        labels = np.array([1] * len(pos) + [0] * len(neg))
        prompts = Prompts(points=tuple(map(tuple, points.tolist())), labels=tuple(labels.tolist()))
        masks, scores, low_res = predictor.predict(
            point_coords=points, point_labels=labels, mask_input=low_res_prev, multimask_output=use_multimask(prompts)
        )
        best = int(np.argmax(scores))
        masks_out.append(masks[best] > 0)
        low_res_prev = low_res[best][None]
    return masks_out


def _full_mask(points: list[int], height: int, width: int) -> np.ndarray:
    region, (xtl, ytl, xbr, ybr) = decode_cvat_rle(points)
    mask = np.zeros((height, width), dtype=bool)
    mask[ytl : ybr + 1, xtl : xbr + 1] = region.astype(bool)
    return mask


def _metric(port: int, name: str) -> float:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    return sum(s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == name)


def test_the_sam2_function_is_listed_for_cvat(gateway: Gateway, sam2_model: tuple[str, PodRunner]) -> None:
    function, _ = sam2_model
    cvat = CvatClient(gateway.port)

    def listed() -> dict[str, Any] | None:
        functions = cvat.list_functions()
        return functions if function in functions else None

    functions = wait_for(listed, 60, what=f"{function} listed")
    annotations = functions[function]["metadata"]["annotations"]
    assert annotations["type"] == "interactor" and annotations["name"] == "Tiny SAM 2.1 (masks)"
    assert "hiera_micro, server-side masks" in functions[function]["spec"]["description"]


def test_a_cvat_interaction_gets_the_pytorch_refinement_chain(
    gateway: Gateway, sam2_model: tuple[str, PodRunner], sam2_checkpoint: tuple[Path, str, str]
) -> None:
    function, runner = sam2_model
    png, rgb = synthetic_image(seed=7)
    expected = _pytorch_chain(sam2_checkpoint[0], rgb)
    client = CvatClient(gateway.port)
    for k, want in enumerate(expected, start=1):
        pos, neg = _prompts(CLICKS[:k])
        status, headers, body = client.invoke_dashboard(function, interactor_payload(png, pos=pos, neg=neg))
        assert status == 200, body
        shapes: list[dict[str, Any]] = body["shapes"]
        got = _full_mask(shapes[0]["points"], *rgb.shape[:2]) if shapes else np.zeros(rgb.shape[:2], dtype=bool)
        union = int(np.logical_or(got, want).sum())
        iou = 1.0 if union == 0 else float(np.logical_and(got, want).sum()) / union
        assert iou == 1.0, f"click {k}: IoU {iou:.4f} against the PyTorch chain"
        assert headers.get("X-Cache") == ("miss" if k == 1 else "hit")
    port = next(p for p in runner.processes.values() if p.main and p.main.running).port
    assert _metric(port, "sam_inference_refined_decodes_total") == len(CLICKS) - 1
