"""A tiny SAM checkpoint built by the tests and served over HTTP on 127.0.0.1 (real checkpoints can't be fetched)."""

from __future__ import annotations

import functools
import http.server
import threading
from dataclasses import dataclass
from pathlib import Path

from sam_inference.torch_models.tiny import write_tiny_checkpoint


@dataclass
class CheckpointServer:
    directory: Path
    file_name: str
    sha256: str
    port: int
    server: http.server.ThreadingHTTPServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.file_name}"

    @property
    def path(self) -> Path:
        return self.directory / self.file_name

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_tiny_checkpoint(directory: Path, seed: int = 0) -> CheckpointServer:
    """Write the vit_tiny checkpoint into ``directory`` and serve that folder on a free loopback port."""
    file_name = "sam_vit_tiny.pth"
    sha = write_tiny_checkpoint(directory / file_name, seed=seed)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="checkpoint-server", daemon=True).start()
    return CheckpointServer(directory, file_name, sha, int(server.server_address[1]), server)
