"""The gateway's shared token (`SAM_GATEWAY_TOKEN`): enforced on every /api/* route (discovery and invocation),
health and metrics stay open, the token never travels to a replica and never shows in the settings' repr."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sam_gateway.app import create_app
from sam_gateway.catalog import Catalog
from sam_gateway.settings import GatewaySettings
from unit.gateway.gateway_samples import SAM_FUNCTION, invocation_body, pod, sammodel

TOKEN = "gw-token-7f3a9c"
ANNOTATION = "samoperator.io/test-address"
API_CALLS = [
    ("GET", "/api/functions"),
    ("GET", f"/api/functions/{SAM_FUNCTION}"),
    ("POST", "/api/function_invocations"),
    ("GET", "/api/nope"),
]


async def _gateway(
    aiohttp_client: Any, aiohttp_server: Callable[..., Awaitable[TestServer]], token: str | None
) -> tuple[TestClient[Any, Any], list[dict[str, str]]]:
    seen: list[dict[str, str]] = []

    async def upstream(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"blob": "AAAA"})

    encoder = web.Application()
    encoder.router.add_route("*", "/{tail:.*}", upstream)
    server = await aiohttp_server(encoder, host="127.0.0.1")
    catalog = Catalog(pod_address_annotation=ANNOTATION)
    catalog.upsert_model(sammodel())
    catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: f"127.0.0.1:{server.port}"}))
    settings = GatewaySettings(host="127.0.0.1", direct_enabled=False, pod_address_annotation=ANNOTATION, token=token)
    return await aiohttp_client(create_app(settings, catalog)), seen


def _headers(auth: str | None) -> dict[str, str]:
    headers = {"x-nuclio-function-name": SAM_FUNCTION, "x-nuclio-path": "/"}
    if auth is not None:
        headers["Authorization"] = auth
    return headers


@pytest.mark.parametrize(
    "auth", [None, "", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}0", TOKEN, f"Basic {TOKEN}", f"bearer {TOKEN}", "Bearer"]
)
async def test_api_requires_the_token(aiohttp_client: Any, aiohttp_server: Any, auth: str | None) -> None:
    client, seen = await _gateway(aiohttp_client, aiohttp_server, TOKEN)
    for method, path in API_CALLS:
        resp = await client.request(method, path, data=invocation_body(b"img"), headers=_headers(auth))
        assert resp.status == 401, (method, path, auth)
        assert await resp.json() == {"error": "Unauthorized"}
    assert seen == [], "nothing reaches a replica without the token"


async def test_right_token_passes_and_is_not_forwarded(aiohttp_client: Any, aiohttp_server: Any) -> None:
    client, seen = await _gateway(aiohttp_client, aiohttp_server, TOKEN)
    auth = _headers(f"Bearer {TOKEN}")
    assert (await client.get("/api/functions", headers=auth)).status == 200
    assert (await client.get(f"/api/functions/{SAM_FUNCTION}", headers=auth)).status == 200
    resp = await client.post("/api/function_invocations", data=invocation_body(b"img"), headers=auth)
    assert resp.status == 200
    assert len(seen) == 1
    assert "Authorization" not in seen[0] and all(TOKEN not in v for v in seen[0].values())


async def test_health_and_metrics_stay_open(aiohttp_client: Any, aiohttp_server: Any) -> None:
    client, _ = await _gateway(aiohttp_client, aiohttp_server, TOKEN)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status in (200, 503)  # 503 only until the first list; never 401
    metrics = await client.get("/metrics")
    assert metrics.status == 200 and TOKEN not in await metrics.text()


async def test_without_a_token_the_api_is_open(aiohttp_client: Any, aiohttp_server: Any) -> None:
    client, _ = await _gateway(aiohttp_client, aiohttp_server, None)
    assert (await client.get("/api/functions")).status == 200


def test_token_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM_GATEWAY_TOKEN", TOKEN)
    settings = GatewaySettings()
    assert settings.token == TOKEN
    assert TOKEN not in repr(settings) and TOKEN not in str(settings)
