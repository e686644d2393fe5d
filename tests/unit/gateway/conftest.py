"""Fixtures of the gateway tests: fake encoder replicas on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from unit.gateway.gateway_samples import EncoderFactory, FakeEncoder


@pytest.fixture
async def encoder_factory(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[EncoderFactory]:
    """Start fake encoders on loopback; slow ones are released at teardown."""
    started: list[FakeEncoder] = []

    async def start(name: str, behaviour: str = "ok", answer_bytes: int = 0) -> FakeEncoder:
        encoder = FakeEncoder(name=name, behaviour=behaviour, answer_bytes=answer_bytes)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", encoder.handle)
        encoder.server = await aiohttp_server(app, host="127.0.0.1")
        started.append(encoder)
        return encoder

    yield start
    for encoder in started:
        encoder.release.set()
