"""Cache hits over HTTP with a numpy fake predictor: a hit answers with the stored body without decoding the
frame again, and the memo of base64 texts never outlives the entries it points to."""

from __future__ import annotations

import base64
import json

import numpy as np
from unit.inference.conftest import ClientFactory
from unit.inference.sam_fakes import FakePredictor, b64, cvat_body, image_bytes

BODY_BYTES = 5_592_420  # {"blob": "<5,592,408 base64 chars>"}


def _blob(raw: bytes) -> np.ndarray:
    return np.frombuffer(base64.b64decode(json.loads(raw)["blob"]), dtype="<f4")


async def test_the_same_image_in_another_base64_spelling_is_a_hit(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake)
    image = image_bytes(seed=600)
    first = await client.post("/", json=cvat_body(image))
    as_data_url = {**cvat_body(image), "image": "data:image/png;base64," + b64(image)}
    second = await client.post("/", json=as_data_url)  # a new text: decoded, and its bytes' key is cached
    third = await client.post("/", json=as_data_url)  # that text again: the memo
    assert [r.headers["X-Cache"] for r in (first, second, third)] == ["miss", "hit", "hit"]
    assert await first.read() == await second.read() == await third.read()
    assert fake.embedded == 1


async def test_a_text_whose_entry_was_evicted_is_encoded_again(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake, cache_max_bytes=BODY_BYTES)  # room for one entry
    one, two = image_bytes(seed=601), image_bytes(seed=602, width=80)
    answers = []
    for image in (one, two, one):
        response = await client.post("/", json=cvat_body(image))
        answers.append((response.headers["X-Cache"], await response.read()))
    assert [cache for cache, _ in answers] == ["miss", "miss", "miss"]
    assert answers[0][1] == answers[2][1] and answers[0][1] != answers[1][1]
    assert fake.embedded == 3


async def test_bad_base64_is_still_a_400_naming_the_field(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor())
    response = await client.post("/", json={**cvat_body(image_bytes(seed=603)), "image": "not base64!"})
    assert response.status == 400
    assert "image" in (await response.json())["error"]


async def test_masks_and_embeddings_endpoints_read_an_entry_stored_as_a_body(make_client: ClientFactory) -> None:
    fake = FakePredictor()
    client = await make_client(fake)
    image = image_bytes(seed=604)
    blob = _blob(await (await client.post("/", json=cvat_body(image))).read())
    raw = await client.post("/v1/embeddings", data=image)
    assert raw.headers["X-Cache"] == "hit"
    np.testing.assert_array_equal(np.frombuffer(await raw.read(), dtype="<f4"), blob)
    masks = await client.post("/v1/masks", json=cvat_body(image, pos_points=[[5, 5]]))
    assert masks.status == 200 and masks.headers["X-Cache"] == "hit"
    assert fake.embedded == 1


async def test_an_image_text_with_a_lone_surrogate_is_a_400(make_client: ClientFactory) -> None:
    client = await make_client(FakePredictor())
    body = b'{"image": "\\ud800AAAA", "pos_points": []}'  # valid JSON; not UTF-8 encodable, not base64
    response = await client.post("/", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
