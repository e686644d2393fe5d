"""Rendezvous routing: stable, balanced, minimal disruption; image digest from the base64 `image` field."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter

from sam_gateway.routing import image_digest, rank_replicas
from unit.gateway.gateway_samples import invocation_body

REPLICAS = [f"10.0.0.{i}:8080" for i in range(1, 6)]
DIGESTS = [hashlib.sha256(str(i).encode()).digest() for i in range(2000)]


def test_digest_is_sha256_of_the_decoded_image() -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    assert image_digest(invocation_body(image)) == hashlib.sha256(image).digest()


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
    assert image_digest(invocation_body(image)) == image_digest(other_prompts)


def test_image_with_line_breaks_or_data_uri_prefix_hashes_like_plain_base64() -> None:
    image = bytes(range(200))
    encoded = base64.b64encode(image).decode()
    wrapped = json.dumps({"image": encoded[:40] + "\n" + encoded[40:]}).encode()
    data_uri = json.dumps({"image": "data:image/png;base64," + encoded}).encode()
    expected = hashlib.sha256(image).digest()
    assert image_digest(wrapped) == expected
    assert image_digest(data_uri) == expected


def test_unparseable_bodies_route_by_body_digest() -> None:
    for body in (b"not json", b"[1, 2]", b'{"image": 5}', b'{"image": "%%%"}', b"\xff\xfe"):
        assert image_digest(body) == hashlib.sha256(body).digest()


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
