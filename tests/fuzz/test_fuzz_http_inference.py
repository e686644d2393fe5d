"""Fuzz the encoder's HTTP API through the real aiohttp app (real sockets, the numpy `FakePredictor`):
whatever the body, headers or query, `POST /`, `/v1/masks` and `/v1/embeddings` answer 200 or a 4xx with a JSON
`{"error": "<message>"}`, never a 5xx. A smaller property drives the real tiny SAM and SAM 2.1 in masks mode with
extreme prompts and checks the responses are strict JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from fuzz._cases import count, fuzz_settings
from fuzz._server import BackgroundLoop, Reply
from hypothesis import given
from hypothesis import strategies as st
from sam_inference.app import STATE, create_app
from sam_inference.settings import InferenceSettings
from unit.inference.conftest import make_settings
from unit.inference.sam_fakes import FakePredictor, b64, image_bytes, png_with_claimed_size

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")

MAX_BODY = 256 * 1024
GOOD_IMAGES = [image_bytes(24, 16, seed=1), image_bytes(17, 33, seed=2, fmt="JPEG"), image_bytes(5, 5, seed=3)]


def _settings(checkpoint: Path, **overrides: Any) -> InferenceSettings:
    """The encoder tests' settings, with this suite's tighter body and pixel limits."""
    return make_settings(
        checkpoint, **{"model_id": "fuzz", "max_body_bytes": MAX_BODY, "max_pixels": 1_000_000, **overrides}
    )


class Encoders:
    """The encoder app in embedding and masks mode, served from one background loop."""

    def __init__(self, checkpoint: Path, predictor_factory: Any = FakePredictor) -> None:
        self.loop = BackgroundLoop()

        def factory(mode: str) -> Any:
            async def build() -> web.Application:
                app = create_app(_settings(checkpoint, mode=mode), predictor=predictor_factory())
                # Start the cleanup context by hand: AppRunner.setup() runs it, then wait for the model.
                return app

            return build

        self.embedding = "http://" + self.loop.serve(factory("embedding"))
        self.masks = "http://" + self.loop.serve(factory("masks"))
        for runner in self.loop._runners:
            self.loop.run(runner.app[STATE].loaded.wait())
            assert runner.app[STATE].ready, runner.app[STATE].load_error

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(scope="module")
def encoders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encoders]:
    checkpoint = tmp_path_factory.mktemp("fuzz-ckpt") / "unused.pth"
    checkpoint.write_bytes(b"not used by the fake predictor")
    servers = Encoders(checkpoint)
    yield servers
    servers.close()


def check_reply(reply: Reply, prop: str, *, ok_key: str | None) -> Any:
    """200 with the expected JSON, or a 4xx whose JSON body carries a message; never a 5xx."""
    assert reply.status < 500, (reply.status, reply.body[:300])
    if reply.status == 200:
        if ok_key is None:
            count(prop, "200")
            return None
        payload = json.loads(reply.body, parse_constant=_reject_constant)
        assert ok_key in payload, payload
        count(prop, "200")
        return payload
    assert 400 <= reply.status < 500
    assert reply.headers.get("Content-Type", "").startswith("application/json"), reply.headers
    payload = json.loads(reply.body)
    assert isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"], payload
    count(prop, str(reply.status))
    return payload


def _reject_constant(name: str) -> Any:
    raise AssertionError(f"response is not strict JSON: it contains {name}")


# ------------------------------------------------------------------ strategies
big_ints = st.one_of(st.integers(), st.integers(min_value=2**63), st.integers(max_value=-(2**63)))
numbers = st.one_of(big_ints, st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e4, 1e4))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
points = st.one_of(
    st.lists(st.tuples(numbers, numbers).map(list), max_size=5),
    st.lists(st.lists(numbers, max_size=4), max_size=4),
    json_values,
)
images = st.one_of(
    st.sampled_from([b64(img) for img in GOOD_IMAGES]),
    st.sampled_from([b64(png_with_claimed_size(5000, 5000)), b64(b"\x89PNG\r\n\x1a\n"), "", "====", "a", "@@@"]),
    st.binary(max_size=200).map(b64),
    st.text(max_size=60),
    st.sampled_from([b64(GOOD_IMAGES[0])[:-3], "data:image/png;base64," + b64(GOOD_IMAGES[2])]),
    json_values,
)


@st.composite
def cvat_payloads(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, strategy in (
        ("image", images),
        ("pos_points", points),
        ("neg_points", points),
        ("obj_bbox", st.one_of(points, st.lists(numbers, min_size=4, max_size=4))),
        ("threshold", numbers),
        ("text_prompts", json_values),
    ):
        if draw(st.booleans()) or (key == "image" and draw(st.integers(0, 9)) > 0):
            body[key] = draw(strategy)
    if draw(st.booleans()):
        body.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)))
    return body


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["cvat", "cvat", "cvat", "json", "bytes", "deep", "bigint", "utf"]))
    if kind == "cvat":
        return json.dumps(draw(cvat_payloads())).encode()
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        depth = draw(st.integers(900, 200_000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        return (opener * depth).encode()
    if kind == "bigint":
        return b'{"image": "aGk=", "pos_points": [[' + b"9" * draw(st.integers(4000, 20000)) + b", 1]]}"
    # valid JSON text in another encoding, or with a lone surrogate
    text = json.dumps({"image": b64(GOOD_IMAGES[0]), "pos_points": [[1, 2]], "note": draw(st.text(max_size=10))})
    return draw(
        st.sampled_from(
            [
                text.encode("utf-16"),
                text.encode("utf-32"),
                b'{"image": "\xed\xa0\x80"}',
                b"\xef\xbb\xbf" + text.encode(),
            ]
        )
    )


content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ]
)


# ------------------------------------------------------------------ properties
@fuzz_settings(500)
@given(body=bodies(), content_type=content_types)
def test_post_root_embedding_mode_never_5xx(encoders: Encoders, body: bytes, content_type: str) -> None:
    reply = encoders.loop.request("POST", encoders.embedding + "/", data=body, headers={"Content-Type": content_type})
    check_reply(reply, "http: POST / (embedding)", ok_key="blob")


@fuzz_settings(400)
@given(body=bodies())
def test_post_root_masks_mode_never_5xx(encoders: Encoders, body: bytes) -> None:
    reply = encoders.loop.request("POST", encoders.masks + "/", data=body, headers={"Content-Type": "application/json"})
    payload = check_reply(reply, "http: POST / (masks)", ok_key="shapes")
    if payload is not None and reply.status == 200:
        assert isinstance(payload["shapes"], list)


@fuzz_settings(400)
@given(body=bodies())
def test_post_v1_masks_never_5xx(encoders: Encoders, body: bytes) -> None:
    reply = encoders.loop.request("POST", encoders.embedding + "/v1/masks", data=body)
    payload = check_reply(reply, "http: POST /v1/masks", ok_key="rle")
    if reply.status == 200:
        assert payload["width"] > 0 and payload["height"] > 0
        assert payload["score"] is None or math.isfinite(payload["score"])


@fuzz_settings(300)
@given(
    body=st.one_of(st.binary(max_size=500), st.sampled_from(GOOD_IMAGES), st.just(png_with_claimed_size(4000, 4000))),
    dtype=st.one_of(st.none(), st.sampled_from(["float32", "float16"]), st.text(max_size=12)),
)
def test_post_v1_embeddings_never_5xx(encoders: Encoders, body: bytes, dtype: str | None) -> None:
    params = None if dtype is None else {"dtype": dtype}
    reply = encoders.loop.request("POST", encoders.embedding + "/v1/embeddings", data=body, params=params)
    check_reply(reply, "http: POST /v1/embeddings", ok_key=None)
    if reply.status == 200:
        assert reply.headers["X-Embedding-Dtype"] in {"float32", "float16"}


@fuzz_settings(200)
@given(
    method=st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "POST", "OPTIONS"]),
    path=st.one_of(
        st.sampled_from(
            [
                "/",
                "/v1/masks",
                "/v1/embeddings",
                "/v1/decoder.onnx",
                "/healthz",
                "/readyz",
                "/nope",
                "/v1/",
                "//",
                "/%2e%2e/",
                "/v1/masks/..",
                "/metrics",
            ]
        ),
        st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=30).map(
            lambda s: "/" + s.replace("?", "").replace("#", "")
        ),
    ),
    headers=st.dictionaries(
        st.sampled_from(["Content-Type", "Content-Encoding", "Accept", "If-None-Match", "X-Whatever", "Expect"]),
        st.text(alphabet=st.characters(codec="latin-1", exclude_categories=("Cc",)), max_size=30),
        max_size=3,
    ),
)
def test_any_method_path_and_headers_never_5xx(
    encoders: Encoders, method: str, path: str, headers: dict[str, str]
) -> None:
    headers.pop("Expect", None)  # 100-continue handling is the client's business
    reply = encoders.loop.request(method, encoders.embedding + path, data=b"{}", headers=headers)
    # /v1/decoder.onnx is 404 here (no decoder configured): a 4xx.
    assert reply.status < 500, (method, path, headers, reply.status, reply.body[:200])
    count("http: methods/paths/headers", str(reply.status))


def test_body_over_the_limit_is_413_json(encoders: Encoders) -> None:
    body = json.dumps({"image": "A" * (MAX_BODY + 10)}).encode()
    for base in (encoders.embedding, encoders.masks):
        reply = encoders.loop.request("POST", base + "/", data=body, headers={"Content-Type": "application/json"})
        assert reply.status == 413
        check_reply(reply, "http: over body limit", ok_key=None)


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"image": "aGk=", "pos_points": [[' + b"1" * 5000 + b", 2]]}", "not valid JSON"),
        (b'{"image": "aGk=", "pos_points": [[NaN, 2]]}', "finite"),
        (b'{"image": "aGk=", "pos_points": [[Infinity, 2]]}', "finite"),
        (b'{"image": "\xff\xfe"}', "not valid JSON"),
        (b'{"image": 42}', "image"),
    ],
)
def test_regressions_found_by_fuzzing_are_400(encoders: Encoders, body: bytes, fragment: str) -> None:
    """Deep nesting (RecursionError) and a >4300-digit integer (ValueError) were 500s before the fix."""
    reply = encoders.loop.request("POST", encoders.embedding + "/", data=body)
    assert reply.status == 400, reply.body[:200]
    assert fragment in json.loads(reply.body)["error"]
    count("http: regressions", "400")


# ------------------------------------------------------------------ the real tiny SAM and SAM 2.1, masks mode
TINY = {"sam": "vit_tiny", "sam2": "hiera_micro"}


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny_masks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BackgroundLoop, str]]:
    """The family's tiny model in masks mode (prompt-prefix refinement on: fuzzed prompt sets that extend an
    earlier one by a click are decoded with its low-res mask)."""
    from sam_inference.__main__ import build_torch_predictor, main

    family = request.param
    checkpoint = tmp_path_factory.mktemp("fuzz-tiny") / f"{TINY[family]}.pt"
    assert main(["make-tiny", "--family", family, "--output", str(checkpoint), "--seed", "0"]) == 0
    loop = BackgroundLoop()
    settings = _settings(checkpoint, mode="masks", model_id=None, model_family=family, model_variant=TINY[family])

    async def build() -> web.Application:
        return create_app(settings, predictor_factory=build_torch_predictor)

    address = loop.serve(build)
    app = loop._runners[0].app
    loop.run(app[STATE].loaded.wait())
    assert app[STATE].ready, app[STATE].load_error
    yield loop, "http://" + address
    loop.close()


in_range = st.one_of(
    st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, -1.0, 1e-45, 23.999, 24.0, 1e6, 1e7, -1e7]),
)
out_of_range = st.one_of(
    st.floats(-1e38, 1e38, allow_nan=False, allow_infinity=False),
    st.sampled_from([3.4e38, -3.4e38, 1e300, -1e300, 8e36]),
)


@fuzz_settings(80)
@given(
    extreme=st.sampled_from([in_range, in_range, in_range, st.one_of(in_range, out_of_range)]),
    endpoint=st.sampled_from(["/", "/v1/masks"]),
    data=st.data(),
)
def test_real_model_masks_with_extreme_prompts(
    tiny_masks: tuple[BackgroundLoop, str], extreme: st.SearchStrategy[float], endpoint: str, data: st.DataObject
) -> None:
    """Coordinates far outside the image once overflowed float32 into a NaN score (invalid JSON); now any
    accepted coordinate yields finite output and absurd ones are a 400."""
    pos = data.draw(st.lists(st.tuples(extreme, extreme), max_size=3), label="pos")
    neg = data.draw(st.lists(st.tuples(extreme, extreme), max_size=2), label="neg")
    box = data.draw(
        st.one_of(st.just([]), st.lists(st.tuples(extreme, extreme).map(list), min_size=2, max_size=2)), label="box"
    )
    loop, base = tiny_masks
    body = {
        "image": b64(GOOD_IMAGES[0]),
        "pos_points": [list(p) for p in pos],
        "neg_points": [list(p) for p in neg],
        "obj_bbox": box,
    }
    reply = loop.request("POST", base + endpoint, data=json.dumps(body).encode())
    payload = check_reply(
        reply, f"http: tiny model {endpoint} extreme prompts", ok_key="shapes" if endpoint == "/" else "rle"
    )
    if endpoint == "/v1/masks" and reply.status == 200:
        assert (payload["width"], payload["height"]) == (24, 16)
    if endpoint == "/" and reply.status == 200:
        for shape in payload["shapes"]:
            *_, xtl, ytl, xbr, ybr = shape["points"]
            assert 0 <= xtl <= xbr < 24 and 0 <= ytl <= ybr < 16
