"""Rendezvous routing: stable, balanced, minimal disruption; the routing key from the base64 `image` text."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter

from sam_gateway.routing import image_digest, rank_replicas
from unit.gateway.gateway_samples import invocation_body

REPLICAS = [f"10.0.0.{i}:8080" for i in range(1, 6)]
DIGESTS = [hashlib.sha256(str(i).encode()).digest() for i in range(2000)]


def _plain(image: bytes) -> bytes:
    return json.dumps({"image": base64.b64encode(image).decode()}).encode()


def test_key_is_32_bytes_stable_per_image_and_differs_between_images() -> None:
    images = [f"frame-{i}".encode() * 50 for i in range(500)]
    keys = [image_digest(invocation_body(image)) for image in images]
    assert all(isinstance(key, bytes) and len(key) == 32 for key in keys)
    assert keys == [image_digest(invocation_body(image)) for image in images]
    assert len(set(keys)) == len(images)
    # One byte changed in a 1 MB frame is another image.
    frame = bytearray(range(256)) * 4096
    before = image_digest(invocation_body(bytes(frame)))
    frame[700_000] ^= 1
    assert image_digest(invocation_body(bytes(frame))) != before


def test_same_image_with_different_prompts_routes_the_same() -> None:
    image = b"frame-17"
    other_prompts = json.dumps(
        {
            "neg_points": [[1, 2]],
            "image": base64.b64encode(image).decode(),
            "pos_points": [],
            "obj_bbox": None,
        }
    ).encode()
    clicks = [
        json.dumps({"image": base64.b64encode(image).decode(), "pos_points": [[x, 2 * x]], "neg_points": []}).encode()
        for x in range(20)
    ]
    assert {image_digest(body) for body in [invocation_body(image), other_prompts, *clicks]} == {
        image_digest(_plain(image))
    }


def test_image_with_line_breaks_or_data_uri_prefix_keys_like_plain_base64() -> None:
    image = bytes(range(200))
    encoded = base64.b64encode(image).decode()
    wrapped = json.dumps({"image": encoded[:40] + "\n" + encoded[40:]}).encode()
    spaced = json.dumps({"image": " " + encoded[:40] + " " + encoded[40:]}).encode()
    data_uri = json.dumps({"image": "data:image/png;base64," + encoded}).encode()
    expected = image_digest(_plain(image))
    assert image_digest(wrapped) == expected
    assert image_digest(spaced) == expected
    assert image_digest(data_uri) == expected


def test_bodies_the_scan_leaves_to_the_parser_key_the_same() -> None:
    """The scan (CVAT's plain body) and the JSON parse (escapes, odd layouts) give one image one key."""
    image = bytes(range(256)) * 40  # its base64 has '/' and '+'
    encoded = base64.b64encode(image).decode()
    expected = image_digest(invocation_body(image))
    bodies = [
        json.dumps({"image": encoded}).replace("/", "\\/").encode(),  # '\/' as PHP and others escape '/'
        json.dumps({"pos_points": [], "image": encoded}, indent=2).encode(),
        json.dumps({"image": encoded}, separators=(",", ":")).encode(),
        json.dumps({"kind": "image", "image": encoded}).encode(),  # "image" as a value first
        json.dumps({"meta": {"image": "other"}, "image": encoded}).encode(),  # a nested "image" first
        b'{"image": "stale", "image": "' + encoded.encode() + b'"}',  # JSON keeps the last duplicate
        json.dumps({"image": "data:image/jpeg;base64," + encoded}).replace("/", "\\/").encode(),
    ]
    for body in bodies:
        assert image_digest(body) == expected, body[:80]


def test_bodies_without_a_usable_image_route_by_the_whole_body() -> None:
    bodies = [
        b"not json",
        b"[1, 2]",
        b'{"image": 5}',
        b'{"image": ""}',
        b'{"pos_points": []}',
        b"\xff\xfe",
        b"[" * 100_000,  # nested deeper than the parser recurses
        b'{"image": "unterminated',
    ]
    keys = [image_digest(body) for body in bodies]
    assert all(len(key) == 32 for key in keys)
    assert keys == [image_digest(body) for body in bodies]  # deterministic
    assert len(set(keys)) == len(bodies)  # the whole body is the key: different bodies, different keys
    assert image_digest(b'{"image": ""}') != image_digest(b'{"image": "", "x": 1}')


def test_ranking_is_a_deterministic_permutation_independent_of_input_order() -> None:
    digest = DIGESTS[0]
    ranked = rank_replicas(digest, REPLICAS)
    assert sorted(ranked) == sorted(REPLICAS)
    assert rank_replicas(digest, list(reversed(REPLICAS))) == ranked
    assert rank_replicas(digest, REPLICAS) == ranked
    assert rank_replicas(digest, []) == []


def test_load_is_spread_over_replicas() -> None:
    primaries = Counter(rank_replicas(d, REPLICAS)[0] for d in DIGESTS)
    assert set(primaries) == set(REPLICAS)
    expected = len(DIGESTS) / len(REPLICAS)
    assert all(0.75 * expected < n < 1.25 * expected for n in primaries.values()), primaries


def test_removing_a_replica_moves_only_its_own_images_to_their_second_choice() -> None:
    leaving = REPLICAS[2]
    remaining = [r for r in REPLICAS if r != leaving]
    moved = 0
    for digest in DIGESTS:
        before = rank_replicas(digest, REPLICAS)
        after = rank_replicas(digest, remaining)
        if before[0] == leaving:
            moved += 1
            assert after[0] == before[1]
        else:
            assert after[0] == before[0]
        # The fallback order of the others is unchanged too.
        assert after == [r for r in before if r != leaving]
    assert moved > 0


def test_adding_a_replica_only_takes_images_for_itself() -> None:
    joining = "10.0.0.99:8080"
    for digest in DIGESTS:
        before = rank_replicas(digest, REPLICAS)[0]
        after = rank_replicas(digest, [*REPLICAS, joining])[0]
        assert after in (before, joining)
