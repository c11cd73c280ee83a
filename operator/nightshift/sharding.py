"""Shards: the bucket of a task, the buckets and hash range of a shard, and which shards to hold.

A task's bucket (0..255) is the top 8 bits of the 64-bit FNV-1a hash of its ``metadata.uid``: the
hash the API server's sharded list and watch computes (``k8s.io/apimachinery/pkg/sharding``,
``HashField``). Shard ``i`` of ``S`` owns the buckets ``[ceil(i*256/S), ceil((i+1)*256/S))``,
which is the hash range ``[start * 2**56, end * 2**56)``, so a ``shardRange(...)`` selector and a
``nightshift.dev/shard-bucket in (...)`` label selector pick exactly the same tasks.

Which shards a replica takes or gives back is :func:`rebalance`: pure, so it is tested with
tables. Each replica takes at most its fair share ``ceil(S/R)`` of the ``S`` shards among the
``R`` live replicas, so ``R`` replicas always have room for every shard.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "BUCKETS",
    "LABEL_BUCKET",
    "MAX_SHARDS",
    "Decision",
    "bucket",
    "bucket_label_selector",
    "fair_share",
    "fnv1a64",
    "hash_range",
    "rebalance",
    "shard_buckets",
    "shard_of",
    "shard_selector",
]

BUCKETS = 256
MAX_SHARDS = BUCKETS  # every shard owns at least one bucket
_SHIFT = 56  # 64-bit hash, 8-bit bucket
_MASK = (1 << 64) - 1
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
# On every Job the operator creates (its task's bucket), and on tasks where the API server cannot
# filter by shardSelector (there a labeller sets it).
LABEL_BUCKET = "nightshift.dev/shard-bucket"
UID_FIELD = "object.metadata.uid"


def fnv1a64(text: str) -> int:
    """The 64-bit FNV-1a hash of ``text``'s UTF-8 bytes (Go's ``hash/fnv.New64a``)."""
    value = _FNV_OFFSET
    for byte in text.encode():
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


def bucket(uid: str) -> int:
    """The bucket (0..255) of an object with this ``metadata.uid``."""
    return fnv1a64(uid) >> _SHIFT


def _check(shard: int, shards: int) -> None:
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"the shard count must be 1..{MAX_SHARDS}, not {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of 0..{shards - 1}")


def shard_buckets(shard: int, shards: int) -> range:
    """The buckets shard ``shard`` of ``shards`` owns: ``[ceil(i*256/S), ceil((i+1)*256/S))``."""
    _check(shard, shards)
    return range(-(-shard * BUCKETS // shards), -(-(shard + 1) * BUCKETS // shards))


def shard_of(bucket_: int, shards: int) -> int:
    """The shard that owns ``bucket_`` (the inverse of :func:`shard_buckets`)."""
    _check(0, shards)
    if not 0 <= bucket_ < BUCKETS:
        raise ValueError(f"bucket {bucket_} is not one of 0..{BUCKETS - 1}")
    # bucket >= ceil(i*256/S)  <=>  i <= bucket*S/256
    return bucket_ * shards // BUCKETS


def hash_range(shard: int, shards: int) -> tuple[int, int]:
    """The hash range ``[start, end)`` of the shard's buckets (``end`` may be 2**64)."""
    owned = shard_buckets(shard, shards)
    return owned.start << _SHIFT, owned.stop << _SHIFT


def shard_selector(shard: int, shards: int) -> str:
    """The API server's ``shardSelector`` for the shard's tasks."""
    start, end = hash_range(shard, shards)
    # 16 hex digits, as the API server requires; 2**64 is the one 17-digit bound it accepts.
    return f"shardRange({UID_FIELD}, '0x{start:016x}', '0x{end:016x}')"


def bucket_label_selector(shard: int, shards: int) -> str:
    """The label selector term for objects labelled with one of the shard's buckets."""
    owned = shard_buckets(shard, shards)
    return f"{LABEL_BUCKET} in ({','.join(str(b) for b in owned)})"


# --- which shards to hold ------------------------------------------------------------------------


def fair_share(shards: int, replicas: int) -> int:
    """The most shards one of ``replicas`` live replicas may hold: ``ceil(S/R)``."""
    return -(-shards // max(1, replicas))


def preference(identity: str, shard: int) -> int:
    """How much replica ``identity`` wants ``shard`` (higher first; rendezvous hashing).

    Replicas racing for free shards each start from a different one, so they rarely write the
    same Lease at once, and each gives back the shards it wants least.
    """
    return fnv1a64(f"{identity}/{shard}")


@dataclass(frozen=True, slots=True)
class Decision:
    """Shards to take and shards to give back now (at most one of them is non-empty)."""

    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()


def rebalance(
    *,
    me: str,
    shards: int,
    replicas: int,
    held: Collection[int],
    free: Collection[int],
) -> Decision:
    """Which shards ``me`` should take or give back now.

    ``replicas`` counts the live replicas (``me`` included), ``held`` the shards ``me`` holds,
    ``free`` those nobody holds (never held, released, or expired as seen from here). A replica
    never holds more than its fair share: above it, it gives back the ones it wants least; below
    it, it takes the free ones it wants most, up to the share.
    """
    share = fair_share(shards, replicas)
    mine = sorted(held, key=lambda s: preference(me, s), reverse=True)
    if len(mine) > share:
        return Decision(release=tuple(sorted(mine[share:])))
    wanted = sorted(
        (s for s in set(free) - set(held) if 0 <= s < shards),
        key=lambda s: preference(me, s),
        reverse=True,
    )
    return Decision(acquire=tuple(wanted[: share - len(mine)]))
