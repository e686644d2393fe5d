"""Domain errors of the encoder service, each mapped to one HTTP status.

Raised anywhere below the routes; `app.error_middleware` turns them into `{"error": message}` JSON with
the status documented on each class, so bad input never surfaces as a 500 or a crash.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: `status` is the HTTP status, the message is shown to the client."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. Retry-After)."""
        return {}


class BadRequestError(ServiceError):
    """400: malformed body, wrong JSON types, missing fields, invalid base64, undecodable image."""

    status = 400


class PayloadTooLargeError(ServiceError):
    """413: body over `max_body_bytes`, or an image over `max_pixels` (incl. decompression bombs)."""

    status = 413


class OverloadedError(ServiceError):
    """429: the encoder queue is full; the client should retry after `retry_after_s` seconds."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class NotFoundError(ServiceError):
    """404: e.g. no decoder configured."""

    status = 404


class NotReadyError(ServiceError):
    """503: the model is not loaded (yet, or its load failed)."""

    status = 503


class DeadlineExceededError(ServiceError):
    """504: the request did not finish within `request_timeout_s`."""

    status = 504
