"""Fuzz the gateway's request handling through the real app on loopback (no cluster: a static catalog whose one
replica is a recording fake encoder): garbage headers, paths, methods and bodies never make the gateway answer
5xx itself, every forwarded request reaches the replica (never another host), and the gateway's credentials and
Nuclio headers never travel upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from fuzz._cases import count, fuzz_settings
from fuzz._server import BackgroundLoop
from hypothesis import given
from hypothesis import strategies as st
from sam_gateway.app import create_app
from sam_gateway.catalog import Catalog
from sam_gateway.routing import image_digest
from sam_gateway.settings import GatewaySettings
from unit.gateway.gateway_samples import SAM_FUNCTION, invocation_body, pod, sammodel

ANNOTATION = "samoperator.io/test-address"
TOKEN = "s3cr3t-gateway-token-ZZZ"
UPSTREAM_MARK = "X-Fuzz-Upstream"


class Upstream:
    """A fake encoder replica that records every request it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            {
                "method": request.method,
                "path": request.raw_path,
                "headers": dict(request.headers),
                "host": request.host,
                "size": len(body),
            }
        )
        return web.json_response({"blob": "AAAA"}, headers={UPSTREAM_MARK: "1", "X-Nuclio-Logs": "[]"})


class Gateway:
    def __init__(self) -> None:
        self.loop = BackgroundLoop()
        self.upstream = Upstream()

        async def build_upstream() -> web.Application:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self.upstream.handle)
            return app

        self.replica = self.loop.serve(build_upstream)

        def build_gateway(token: str | None) -> Any:
            async def build() -> web.Application:
                settings = GatewaySettings(
                    host="127.0.0.1",
                    direct_enabled=False,
                    pod_address_annotation=ANNOTATION,
                    upstream_timeout_s=10,
                    connect_timeout_s=2,
                    token=token,
                    max_body_bytes=1024 * 1024,
                )
                catalog = Catalog(pod_address_annotation=ANNOTATION)
                catalog.upsert_model(sammodel())
                catalog.upsert_pod(pod("enc-0", annotations={ANNOTATION: self.replica}))
                return create_app(settings, catalog)

            return build

        self.open = "http://" + self.loop.serve(build_gateway(None))
        self.locked = "http://" + self.loop.serve(build_gateway(TOKEN))


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    gw = Gateway()
    yield gw
    gw.loop.close()


header_text = st.text(alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=40)
paths = st.one_of(
    st.sampled_from(
        [
            "/",
            "",
            "//",
            "/v1/masks",
            "/v1/embeddings?dtype=float16",
            "@evil.example/",
            "//evil.example/x",
            "http://evil.example/",
            "https://evil.example:443/x",
            "/..//..//etc/passwd",
            "/%2e%2e/%2e%2e/",
            "\\\\evil.example\\x",
            "/a b",
            "/?q=1#frag",
            "#",
            "?",
            "/%zz",
            "/\u00e9",
            ":80/x",
            "[::1]/",
            "user:pass@evil.example/",
        ]
    ),
    header_text,
)
function_names = st.one_of(st.just(SAM_FUNCTION), st.just(f" {SAM_FUNCTION} "), header_text)
bodies = st.one_of(
    st.just(invocation_body(b"\x89PNG fake")),
    st.binary(max_size=300),
    st.integers(900, 100_000).map(lambda n: b"[" * n),
    st.integers(4400, 9000).map(lambda n: b'{"image": ' + b"7" * n + b"}"),
    st.text(max_size=50).map(lambda t: json.dumps({"image": t}).encode()),
)


@fuzz_settings(400)
@given(
    method=st.sampled_from(["POST", "POST", "GET", "PUT", "DELETE", "PATCH"]),
    name=function_names,
    path=st.one_of(st.none(), paths),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "x-nuclio-function-namespace",
                "x-nuclio-project-name",
                "Content-Type",
                "Accept-Encoding",
                "Content-Encoding",
                "Connection",
                "Host",
                "Proxy-Authorization",
                "Forwarded",
                "X-Forwarded-Host",
                "X-Whatever",
            ]
        ),
        header_text,
        max_size=4,
    ),
    body=bodies,
)
def test_dashboard_invocation_never_5xx_from_the_gateway(
    gateway: Gateway, method: str, name: str, path: str | None, extra: dict[str, str], body: bytes
) -> None:
    headers = {**extra, "x-nuclio-function-name": name}
    if path is not None:
        headers["x-nuclio-path"] = path
    before = len(gateway.upstream.received)
    reply = gateway.loop.request(method, gateway.open + "/api/function_invocations", data=body, headers=headers)
    forwarded = reply.headers.get(UPSTREAM_MARK) == "1"
    if not forwarded:
        assert 400 <= reply.status < 500, (name, path, reply.status, reply.body[:300])
        assert isinstance(json.loads(reply.body).get("error"), str)
        assert len(gateway.upstream.received) == before
        count("gateway: dashboard invocation", str(reply.status))
        return
    assert reply.status == 200
    assert len(gateway.upstream.received) == before + 1, "one invocation, one upstream request"
    seen = gateway.upstream.received[-1]
    assert seen["host"] == gateway.replica, "the request must reach the replica, whatever x-nuclio-path says"
    assert not any(k.lower().startswith("x-nuclio") for k in seen["headers"])
    assert "Proxy-Authorization" not in seen["headers"]
    assert seen["size"] == len(body)
    assert "X-Nuclio-Logs" not in reply.headers
    count("gateway: dashboard invocation", "forwarded")


@fuzz_settings(200)
@given(
    auth=st.one_of(
        st.none(),
        header_text,
        st.sampled_from(
            [
                f"Bearer {TOKEN} ",
                f"bearer {TOKEN}",
                f"Bearer  {TOKEN}",
                TOKEN,
                f"Basic {TOKEN}",
                f"Bearer {TOKEN[:-1]}",
                f"Bearer {TOKEN}x",
            ]
        ),
    ),
    path=st.sampled_from(
        [
            "/api/functions",
            f"/api/functions/{SAM_FUNCTION}",
            "/api/function_invocations",
            "/api/function_invocations/x",
            "/api/",
            "/api/nope",
            "/API/functions",
        ]
    ),
)
def test_any_wrong_token_is_401_on_api(gateway: Gateway, auth: str | None, path: str) -> None:
    headers = {"x-nuclio-function-name": SAM_FUNCTION}
    if auth is not None:
        headers["Authorization"] = auth
    before = len(gateway.upstream.received)
    method = "POST" if "invocations" in path else "GET"
    reply = gateway.loop.request(method, gateway.locked + path, data=invocation_body(b"x"), headers=headers)
    if auth is not None and auth.strip(" \t") == f"Bearer {TOKEN}":  # HTTP strips surrounding whitespace
        assert reply.status != 401
        count("gateway: wrong token", "right after OWS strip")
    elif path.startswith("/api/"):
        assert reply.status == 401, (auth, path, reply.status)
        assert json.loads(reply.body) == {"error": "Unauthorized"}
        assert len(gateway.upstream.received) == before
        count("gateway: wrong token", "401")
    else:  # /API/... is not the API (case-sensitive routes): a 404, never served
        assert reply.status == 404
        count("gateway: wrong token", "404")


@fuzz_settings(100)
@given(body=bodies, path=paths)
def test_right_token_is_accepted_and_never_forwarded(gateway: Gateway, body: bytes, path: str) -> None:
    headers = {"x-nuclio-function-name": SAM_FUNCTION, "x-nuclio-path": path, "Authorization": f"Bearer {TOKEN}"}
    before = len(gateway.upstream.received)
    reply = gateway.loop.request("POST", gateway.locked + "/api/function_invocations", data=body, headers=headers)
    assert reply.status == 200 and reply.headers.get(UPSTREAM_MARK) == "1", (reply.status, reply.body[:200])
    seen = gateway.upstream.received[before]
    assert "Authorization" not in seen["headers"]
    assert all(TOKEN not in str(v) for v in seen["headers"].values())
    count("gateway: right token", "200")


@fuzz_settings(300)
@given(body=st.one_of(bodies, st.binary(max_size=2000)))
def test_image_digest_is_total(body: bytes) -> None:
    digest = image_digest(body)
    assert isinstance(digest, bytes) and len(digest) == 32
    count("gateway: image_digest", "ok")


@fuzz_settings(200)
@given(
    method=st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "DELETE"]),
    path=st.one_of(
        st.sampled_from(
            [
                "/api/functions",
                "/api/functions/",
                "/api/functions/%00",
                "/healthz",
                "/readyz",
                "/metrics",
                "/",
                "/api/functions/" + "a" * 5000,
            ]
        ),
        header_text.map(lambda s: "/api/functions/" + s.replace("?", "").replace("#", "")),
    ),
    extra=st.dictionaries(
        st.sampled_from(["x-nuclio-project-name", "x-nuclio-function-namespace", "Accept"]), header_text, max_size=3
    ),
)
def test_discovery_and_probes_never_5xx(gateway: Gateway, method: str, path: str, extra: dict[str, str]) -> None:
    reply = gateway.loop.request(method, gateway.open + path, headers=extra)
    if path == "/readyz" and reply.status == 503:  # by design until the watcher's first list (none here)
        assert method == "HEAD" or json.loads(reply.body)["status"] == "waiting for the initial list"
    else:
        assert reply.status < 500, (method, path, reply.status, reply.body[:200])
    if reply.status == 200 and path.startswith("/api/functions/") and method == "GET":
        assert json.loads(reply.body)["metadata"]["name"] == SAM_FUNCTION
    count("gateway: discovery/probes", str(reply.status))


def test_regression_deeply_nested_body_is_routed_not_500(gateway: Gateway) -> None:
    """`image_digest` raised RecursionError on JSON nested ~100k deep: the gateway answered 500 (fixed)."""
    assert len(image_digest(b"[" * 100_000)) == 32
    headers = {"x-nuclio-function-name": SAM_FUNCTION, "x-nuclio-path": "/"}
    reply = gateway.loop.request(
        "POST", gateway.open + "/api/function_invocations", data=b"[" * 100_000, headers=headers
    )
    assert reply.status == 200 and reply.headers.get(UPSTREAM_MARK) == "1"
    count("gateway: regressions", "200")
