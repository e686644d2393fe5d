"""Fixtures of the encoder tests: the tiny real-architecture SAM (built once per session), its exported
decoder, settings and aiohttp clients around `create_app`."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sam_inference.app import STATE, create_app
from sam_inference.predictor import Predictor
from sam_inference.settings import InferenceSettings

TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vit_tiny checkpoint, written by the `make-tiny` CLI once per session."""
    from sam_inference.__main__ import main

    path = tmp_path_factory.mktemp("tiny") / "sam_vit_tiny.pth"
    assert main(["make-tiny", "--output", str(path), "--seed", str(TINY_SEED)]) == 0
    return path


@pytest.fixture(scope="session")
def tiny_sha256(tiny_checkpoint: Path) -> str:
    return hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def tiny_predictor(tiny_checkpoint: Path) -> Any:
    """A loaded SamEncoderPredictor on the tiny model (CPU, fp32), shared by the tests: float32 throughout, its mask
    decoder pinned to onnxruntime (`auto` runs OpenVINO's bfloat16 products on an AMX CPU, whose masks are
    test_openvino_mask_decoder's), so that what it decodes is upstream's `SamPredictor` to float rounding."""
    from sam_inference.torch_models.sam_predictor import SamEncoderPredictor

    predictor = SamEncoderPredictor(
        "vit_tiny", tiny_checkpoint, device="cpu", precision="float32", mask_decoder="onnxruntime"
    )
    predictor.load()
    return predictor


@pytest.fixture(scope="session")
def tiny_decoder(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CVAT-format decoder of the tiny checkpoint (exported once per session)."""
    from sam_inference.torch_models.export import export_decoder

    output = tmp_path_factory.mktemp("decoder") / "sam_vit_tiny.decoder.onnx"
    export_decoder(tiny_checkpoint, "vit_tiny", output)
    return output


def make_settings(checkpoint: Path, **overrides: Any) -> InferenceSettings:
    values: dict[str, Any] = {
        "checkpoint_path": checkpoint,
        "model_variant": "vit_tiny",
        "device": "cpu",
        "model_id": "test-model",
        "batch_wait_ms": 0,
    }
    values.update(overrides)
    return InferenceSettings(**values)


ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client(aiohttp_client: Any, tiny_checkpoint: Path) -> AsyncIterator[ClientFactory]:
    """`await make_client(predictor, **settings)` → a test client whose model is loaded (or failed); with
    `predictor` None the app builds the service's own (torch) predictor from the settings."""
    from sam_inference.__main__ import build_torch_predictor

    async def factory(predictor: Predictor | None, **overrides: Any) -> TestClient[Any, Any]:
        settings = make_settings(tiny_checkpoint, **overrides)
        app = create_app(settings, predictor=predictor, predictor_factory=build_torch_predictor)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        await app[STATE].loaded.wait()
        return client

    yield factory
