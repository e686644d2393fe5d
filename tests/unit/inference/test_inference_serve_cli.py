"""`sam-inference serve` as a process, configured only by SAM_INFERENCE_* env vars (the pod contract)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from unit.inference.sam_fakes import image_bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_serve_reads_env_and_answers_until_sigterm(tiny_checkpoint: Path, tiny_decoder: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SAM_INFERENCE_HOST": "127.0.0.1",
        "SAM_INFERENCE_PORT": str(port),
        "SAM_INFERENCE_MODEL_VARIANT": "vit_tiny",
        "SAM_INFERENCE_CHECKPOINT_PATH": str(tiny_checkpoint),
        "SAM_INFERENCE_DECODER_PATH": str(tiny_decoder),
        "SAM_INFERENCE_DEVICE": "cpu",
        "SAM_INFERENCE_MODE": "masks",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "sam_inference", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if process.poll() is not None:
                pytest.fail(f"serve exited early: {process.stdout.read().decode() if process.stdout else ''}")
            try:
                if _get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("serve never became ready")
        status, body, headers = _get(f"{base}/v1/embeddings", image_bytes(seed=900))
        assert status == 200 and len(body) == 4_194_304
        assert headers["X-Embedding-Dtype"] == "float32"
        assert _get(f"{base}/v1/decoder.onnx")[1] == tiny_decoder.read_bytes()
        assert b"sam_inference_ready 1.0" in _get(f"{base}/metrics")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_serve_without_checkpoint_setting_exits_with_a_message() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAM_INFERENCE_")}
    result = subprocess.run(
        [sys.executable, "-m", "sam_inference", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "checkpoint_path" in result.stderr
