"""`sam-inference fetch`: put a checkpoint into the model cache, verified by sha256.

The operator runs this as the `fetch-checkpoint` init container. Behaviour:
- the output already exists with the expected hash → nothing is downloaded;
- http(s) sources stream into `<output>.part` and resume with an HTTP Range request after a dropped
  connection (and across restarts of the init container), with exponential back-off between attempts;
- local paths (or file:// URLs) are copied the same way;
- the hash is checked before an atomic rename into place; a mismatch deletes the partial file and fails
  with a clear message (exit status 2), never leaving a wrong file under the final name;
- a lock file serialises pods that share one cache volume;
- progress: a redrawn bar on a terminal, plain lines (every 10 %) in logs.

Standard library only: it runs before the model is loaded and must not depend on torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import IO

CHUNK = 1 << 20


class FetchError(Exception):
    """A download that cannot succeed (bad hash, 404, ...); `exit_code` is the CLI status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HashMismatchError(FetchError):
    """The fetched bytes do not have the expected sha256."""

    def __init__(self, source: str, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch for {source}: expected {expected}, got {actual}; the partial file was deleted",
            exit_code=2,
        )


@dataclass
class Progress:
    """Reports bytes received: a bar when `stream` is a TTY, otherwise a line per 10 %."""

    stream: IO[str]
    label: str
    total: int | None = None
    done: int = 0
    _last_decile: int = field(default=-1, repr=False)
    _last_draw: float = field(default=0.0, repr=False)

    @property
    def tty(self) -> bool:
        return self.stream.isatty()

    def update(self, done: int) -> None:
        self.done = done
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or (self.total and done >= self.total):
                self._last_draw = now
                self.stream.write("\r" + self._bar())
                self.stream.flush()
            return
        decile = (done * 10 // self.total) if self.total else done // (100 * CHUNK)
        if decile != self._last_decile:
            self._last_decile = decile
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r" + self._bar() + "\n")
            self.stream.flush()

    def _line(self) -> str:
        if self.total:
            return f"fetch {self.label}: {self.done}/{self.total} bytes ({100 * self.done // self.total}%)"
        return f"fetch {self.label}: {self.done} bytes"

    def _bar(self, width: int = 30) -> str:
        mib = self.done / (1 << 20)
        if not self.total:
            return f"{self.label} {mib:8.1f} MiB"
        filled = width * self.done // self.total
        pct = 100 * self.done / self.total
        return f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {pct:5.1f}% {mib:8.1f} MiB"


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def _local_path(source: str) -> Path:
    parts = urllib.parse.urlsplit(source)
    return Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else Path(source)


def _copy_local(source: Path, part: Path, progress: Progress) -> None:
    if not source.is_file():
        raise FetchError(f"source {source} does not exist or is not a file")
    progress.total = source.stat().st_size
    with source.open("rb") as src, part.open("wb") as dst:
        while block := src.read(CHUNK):
            dst.write(block)
            progress.update(dst.tell())


def _download_once(url: str, part: Path, progress: Progress, timeout: float) -> None:
    """One attempt: resume from the size of `part` when the server honours Range."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "sam-inference-fetch"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is already complete (or longer than the source)
            return
        if 400 <= exc.code < 500 and exc.code not in (408, 429):
            raise FetchError(f"GET {url}: HTTP {exc.code} {exc.reason}") from exc
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # server ignored Range: start over
        length = response.headers.get("Content-Length")
        progress.total = offset + int(length) if length is not None else None
        with part.open("ab" if offset else "wb") as out:
            done = offset
            while block := response.read(CHUNK):
                out.write(block)
                done += len(block)
                progress.update(done)
        if progress.total is not None and done < progress.total:
            raise HTTPException(f"connection closed after {done} of {progress.total} bytes")


def _download(
    url: str,
    part: Path,
    progress: Progress,
    retries: int,
    backoff: float,
    timeout: float,
    sleep: Callable[[float], None],
) -> None:
    for attempt in range(retries + 1):
        try:
            _download_once(url, part, progress, timeout)
            return
        except FetchError:
            raise
        except (OSError, HTTPException) as exc:
            if attempt == retries:
                raise FetchError(f"GET {url} failed after {retries + 1} attempts: {exc}") from exc
            delay = backoff * (2**attempt)
            progress.stream.write(
                f"fetch {progress.label}: attempt {attempt + 1} failed ({exc}); retrying in {delay:.1f}s\n"
            )
            sleep(delay)


def fetch(
    source: str,
    sha256: str,
    output: Path,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    stream: IO[str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Make `output` hold `source` with digest `sha256`; returns False when it already did."""
    expected = sha256.strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise FetchError(f"--sha256 must be 64 hex digits, got {sha256!r}")
    stream = stream if stream is not None else sys.stderr
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    with output.with_name(output.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if output.exists() and sha256_file(output) == expected:
            stream.write(f"fetch {output.name}: already present with sha256 {expected}\n")
            return False
        progress = Progress(stream, output.name)
        if _is_url(source):
            _download(source, part, progress, retries, backoff, timeout, sleep)
        else:
            _copy_local(_local_path(source), part, progress)
        progress.finish()
        actual = sha256_file(part)
        if actual != expected:
            part.unlink(missing_ok=True)
            raise HashMismatchError(source, expected, actual)
        with part.open("rb") as handle:
            os.fsync(handle.fileno())
        part.replace(output)
        _fsync_dir(output.parent)
        stream.write(f"fetch {output.name}: verified sha256 {expected}\n")
        return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FetchError", "HashMismatchError", "Progress", "fetch", "sha256_file"]
