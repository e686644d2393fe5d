"""`sam-inference fetch` against a local HTTP server on 127.0.0.1: good hash, bad hash, resume."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sam_inference.__main__ import main
from sam_inference.fetch import FetchError, HashMismatchError, Progress, fetch


@dataclass
class Origin:
    """What the test server serves and what it saw."""

    payload: bytes = b""
    drop_after: int | None = None  # first response: close the connection after this many body bytes
    honour_range: bool = True
    ranges: list[str | None] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def origin(tiny_checkpoint: Path) -> Iterator[Origin]:
    state = Origin(payload=tiny_checkpoint.read_bytes())

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/sam.pth":
                self.send_error(404)
                return
            header = self.headers.get("Range")
            state.ranges.append(header)
            start = 0
            if header and state.honour_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(state.payload):
                    self.send_response(416)
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(state.payload) - 1}/{len(state.payload)}")
            else:
                self.send_response(200)
            body = state.payload[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drop_after is not None:
                cut, state.drop_after = state.drop_after, None
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/sam.pth"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _run(origin: Origin, output: Path, sha: str, **kwargs: Any) -> tuple[bool, str]:
    log = io.StringIO()
    changed = fetch(origin.url, sha, output, stream=log, sleep=lambda _: None, **kwargs)
    return changed, log.getvalue()


def test_downloads_and_verifies(origin: Origin, tmp_path: Path, tiny_sha256: str) -> None:
    output = tmp_path / "models" / "sam.pth"
    changed, log = _run(origin, output, tiny_sha256)
    assert changed
    assert output.read_bytes() == origin.payload
    assert not output.with_name("sam.pth.part").exists()
    assert "100%" in log and f"verified sha256 {tiny_sha256}" in log


def test_existing_file_with_the_right_hash_is_not_downloaded_again(
    origin: Origin, tmp_path: Path, tiny_sha256: str
) -> None:
    output = tmp_path / "sam.pth"
    output.write_bytes(origin.payload)
    changed, log = _run(origin, output, tiny_sha256)
    assert not changed
    assert origin.ranges == []
    assert "already present" in log


def test_existing_file_with_a_wrong_hash_is_replaced(origin: Origin, tmp_path: Path, tiny_sha256: str) -> None:
    output = tmp_path / "sam.pth"
    output.write_bytes(b"stale")
    assert _run(origin, output, tiny_sha256)[0]
    assert output.read_bytes() == origin.payload


def test_hash_mismatch_fails_without_leaving_a_file(origin: Origin, tmp_path: Path) -> None:
    output = tmp_path / "sam.pth"
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(HashMismatchError) as info:
        _run(origin, output, wrong)
    assert wrong in str(info.value) and info.value.exit_code == 2
    assert not output.exists() and not output.with_name("sam.pth.part").exists()


def test_dropped_connection_resumes_with_a_range_request(origin: Origin, tmp_path: Path, tiny_sha256: str) -> None:
    origin.drop_after = 3_000_000
    output = tmp_path / "sam.pth"
    changed, log = _run(origin, output, tiny_sha256)
    assert changed
    assert origin.ranges == [None, "bytes=3000000-"]
    assert "attempt 1 failed" in log
    assert hashlib.sha256(output.read_bytes()).hexdigest() == tiny_sha256


def test_partial_file_from_an_earlier_run_is_resumed(origin: Origin, tmp_path: Path, tiny_sha256: str) -> None:
    output = tmp_path / "sam.pth"
    output.with_name("sam.pth.part").write_bytes(origin.payload[:1234])
    assert _run(origin, output, tiny_sha256)[0]
    assert origin.ranges == ["bytes=1234-"]
    assert output.read_bytes() == origin.payload


def test_server_ignoring_range_restarts_from_zero(origin: Origin, tmp_path: Path, tiny_sha256: str) -> None:
    origin.honour_range = False
    output = tmp_path / "sam.pth"
    output.with_name("sam.pth.part").write_bytes(b"garbage" * 10)
    assert _run(origin, output, tiny_sha256)[0]
    assert output.read_bytes() == origin.payload


def test_404_fails_at_once(origin: Origin, tmp_path: Path, tiny_sha256: str) -> None:
    origin.url = origin.url.replace("sam.pth", "missing.pth")
    with pytest.raises(FetchError, match="HTTP 404"):
        _run(origin, tmp_path / "sam.pth", tiny_sha256)


def test_cli_copies_local_paths_and_reports_mismatch(
    tiny_checkpoint: Path, tiny_sha256: str, tmp_path: Path, capsys: Any
) -> None:
    output = tmp_path / "copy.pth"
    assert main(["fetch", "--source", str(tiny_checkpoint), "--sha256", tiny_sha256, "--output", str(output)]) == 0
    assert output.read_bytes() == tiny_checkpoint.read_bytes()
    bad = "0" * 64
    status = main(
        ["fetch", "--source", f"file://{tiny_checkpoint}", "--sha256", bad, "--output", str(tmp_path / "x.pth")]
    )
    assert status == 2
    assert f"expected {bad}" in capsys.readouterr().err
    assert main(["fetch", "--source", str(tiny_checkpoint), "--sha256", "xyz", "--output", str(output)]) == 1


def test_progress_is_a_bar_on_a_tty_and_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        progress = Progress(stream, "sam.pth", total=100)
        for done in range(0, 101, 5):
            progress.update(done)
        progress.finish()
    assert "\r" in tty.getvalue() and "[##" in tty.getvalue()
    lines = plain.getvalue().splitlines()
    assert "\r" not in plain.getvalue()
    assert lines[0].endswith("(0%)") and lines[-1].endswith("(100%)")
    assert len(lines) == 11
