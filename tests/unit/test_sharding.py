"""Shards (``nightshift.sharding``): the hash the API server uses, buckets and shard ranges that
agree with it, and the table of which shards a replica takes or gives back."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nightshift.sharding import (
    BUCKETS,
    LABEL_BUCKET,
    Decision,
    bucket,
    bucket_label_selector,
    fair_share,
    fnv1a64,
    hash_range,
    rebalance,
    shard_buckets,
    shard_of,
    shard_selector,
)


# Go's hash/fnv New64a (which k8s.io/apimachinery/pkg/sharding.HashField formats), run on these
# strings; the first three are also the FNV reference vectors.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0xCBF29CE484222325),
        ("a", 0xAF63DC4C8601EC8C),
        ("foobar", 0x85944171F73967E8),
        ("6f1c2a9e-0000-4000-8000-000000000001", 0xBCA1EFDF327E4831),
        ("ba42d008-ce06-461e-bb5f-b8fc3c33eccc", 0x355109251CB92992),
        ("ünïcode", 0xB1B0D40350A25BEB),  # hashed as UTF-8 bytes
    ],
)
def test_fnv1a64_is_gos(text: str, expected: int) -> None:
    assert fnv1a64(text) == expected


def test_a_bucket_is_the_top_8_bits() -> None:
    assert bucket("6f1c2a9e-0000-4000-8000-000000000001") == 0xBC
    assert bucket("ba42d008-ce06-461e-bb5f-b8fc3c33eccc") == 0x35


@pytest.mark.parametrize(
    ("shards", "expected"),
    [
        (1, [(0, 256)]),
        (2, [(0, 128), (128, 256)]),
        (3, [(0, 86), (86, 171), (171, 256)]),
        (6, [(0, 43), (43, 86), (86, 128), (128, 171), (171, 214), (214, 256)]),
    ],
)
def test_shard_buckets(shards: int, expected: list[tuple[int, int]]) -> None:
    assert [(r.start, r.stop) for r in (shard_buckets(i, shards) for i in range(shards))] == (
        expected
    )


@given(st.integers(1, 256))
def test_the_shards_cover_every_bucket_once(shards: int) -> None:
    owners = [i for i in range(shards) for _ in shard_buckets(i, shards)]
    assert len(owners) == BUCKETS
    assert owners == [shard_of(b, shards) for b in range(BUCKETS)]
    assert all(len(shard_buckets(i, shards)) >= 1 for i in range(shards))


@given(st.integers(1, 256), st.integers(0, 2**64 - 1))
def test_the_hash_range_and_the_buckets_pick_the_same_hashes(shards: int, value: int) -> None:
    by_range = [
        i for i in range(shards) if hash_range(i, shards)[0] <= value < hash_range(i, shards)[1]
    ]
    assert by_range == [shard_of(value >> 56, shards)]


def test_selectors_name_the_same_shard() -> None:
    assert shard_selector(0, 2) == (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"
    )
    # The last shard ends at 2**64, the one 17-digit bound the API server accepts.
    assert shard_selector(2, 3) == (
        "shardRange(object.metadata.uid, '0xab00000000000000', '0x10000000000000000')"
    )
    assert bucket_label_selector(5, 6) == (
        f"{LABEL_BUCKET} in ({','.join(str(b) for b in range(214, 256))})"
    )


@pytest.mark.parametrize(("shard", "shards"), [(0, 0), (0, 257), (3, 3), (-1, 2)])
def test_impossible_shards_are_refused(shard: int, shards: int) -> None:
    with pytest.raises(ValueError, match="shard"):
        shard_buckets(shard, shards)


def test_selectors_are_what_the_api_server_parses() -> None:
    # apiserver/pkg/sharding/parser.go: 0x and exactly 16 lowercase hex digits, or 2**64.
    bound = re.compile(r"^0x([0-9a-f]{16}|10000000000000000)$")
    for shards in (1, 2, 3, 7, 256):
        for i in range(shards):
            start, end = re.findall(r"'([^']*)'", shard_selector(i, shards))
            assert bound.match(start), start
            assert bound.match(end), end


# --- which shards to hold ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shards", "replicas", "share"),
    [(6, 1, 6), (6, 3, 2), (6, 4, 2), (6, 5, 2), (6, 7, 1), (8, 3, 3)],
)
def test_fair_share(shards: int, replicas: int, share: int) -> None:
    assert fair_share(shards, replicas) == share


@pytest.mark.parametrize(
    ("case", "replicas", "held", "free", "acquire", "release"),
    [
        ("alone: takes every free shard", 1, [], range(6), 6, 0),
        ("three replicas: takes its share", 3, [], range(6), 2, 0),
        ("at its share: takes nothing more", 3, [0, 1], [2, 3], 0, 0),
        ("below its share: tops up", 3, [4], [0, 1, 2], 1, 0),
        ("nothing free: waits", 2, [], [], 0, 0),
        ("a replica joined: gives back above the share", 3, range(6), [], 0, 4),
        ("one left (3 to 2): takes the freed ones", 2, [0, 1], [2, 3], 1, 0),
        ("more replicas than shards: one each at most", 8, [3], [0, 1], 0, 0),
    ],
)
def test_rebalance(
    case: str,
    replicas: int,
    held: list[int],
    free: list[int],
    acquire: int,
    release: int,
) -> None:
    decision = rebalance(me="a", shards=6, replicas=replicas, held=held, free=free)
    assert len(decision.acquire) == acquire, case
    assert len(decision.release) == release, case
    assert set(decision.acquire) <= set(free) - set(held)
    assert set(decision.release) <= set(held)
    after = len(held) + acquire - release
    assert after <= fair_share(6, replicas)


def test_replicas_racing_for_free_shards_start_from_different_ones() -> None:
    firsts = {
        rebalance(me=name, shards=6, replicas=3, held=[], free=range(6)).acquire
        for name in ("nightshift-7d9f-abcde", "nightshift-7d9f-fghij", "nightshift-7d9f-klmno")
    }
    assert len(firsts) == 3  # three different pairs: no Lease is fought over


def test_the_same_replica_decides_the_same_way() -> None:
    decision = rebalance(me="a", shards=6, replicas=3, held=[], free=range(6))
    assert decision == rebalance(me="a", shards=6, replicas=3, held=[], free=[5, 4, 3, 2, 1, 0])
    assert decision != Decision()


def test_a_replica_ends_holding_every_shard_with_everyone_at_their_share() -> None:
    """Play rounds of three replicas that start together until nothing changes: every shard held
    once, two each."""
    names = ["a", "b", "c"]
    held: dict[str, set[int]] = {n: set() for n in names}
    for _ in range(10):
        for name in names:
            taken = set().union(*held.values())
            free = set(range(6)) - taken
            decision = rebalance(me=name, shards=6, replicas=3, held=held[name], free=free)
            held[name] |= set(decision.acquire)
            held[name] -= set(decision.release)
    assert sorted(s for h in held.values() for s in h) == list(range(6))
    assert [len(held[n]) for n in names] == [2, 2, 2]
