"""Seeds and random streams.

Every random function in peakplan takes ``seed: int | SeedSequence | Generator | None``
and normalises it here. Parallel work gets its streams from ``SeedSequence.spawn`` keyed
by a *block index* that does not depend on the chunk size or worker count, so the same
root seed always gives the same numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SeedLike", "block_generators", "block_seeds", "generator", "root_entropy", "seed_sequence"]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None

#: Paths are drawn in fixed blocks of this many paths; each block has its own stream.
#: Chunks (the unit of memory) are whole numbers of blocks, so results are identical
#: for every chunk size and every number of workers.
BLOCK_PATHS = 1000


def seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """Normalise ``seed`` to a ``SeedSequence``.

    A ``Generator`` contributes its bit generator's seed sequence; ``None`` draws fresh
    OS entropy (recorded by callers through :func:`root_entropy`).
    """
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, np.random.Generator):
        ss = seed.bit_generator.seed_seq
        if not isinstance(ss, np.random.SeedSequence):  # pragma: no cover - exotic bitgens
            raise TypeError("Generator has no SeedSequence; pass an int seed instead")
        return ss
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        return np.random.SeedSequence(int(seed))
    raise TypeError(f"seed must be int, SeedSequence, Generator or None, got {type(seed).__name__}")


def root_entropy(seed: SeedLike) -> int:
    """The integer entropy of the root seed, for manifests and results."""
    ent = seed_sequence(seed).entropy
    return int(ent) if not isinstance(ent, (list, tuple)) else int(ent[0])


def generator(seed: SeedLike) -> np.random.Generator:
    """A ``Generator`` (PCG64) for ``seed``; a ``Generator`` passed in is returned as is."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.Generator(np.random.PCG64(seed_sequence(seed)))


def block_seeds(seed: SeedLike, start: int, stop: int) -> list[np.random.SeedSequence]:
    """Seed sequences for blocks ``start..stop-1`` of the stream rooted at ``seed``.

    Block ``k``'s sequence is the ``k``-th child that ``SeedSequence.spawn`` would give,
    built directly from the spawn key so workers need not spawn the blocks before theirs.
    """
    root = seed_sequence(seed)
    return [
        np.random.SeedSequence(
            entropy=root.entropy,
            spawn_key=(*root.spawn_key, k),
            pool_size=root.pool_size,
        )
        for k in range(start, stop)
    ]


def block_generators(seed: SeedLike, start: int, stop: int) -> list[np.random.Generator]:
    """One SFC64 ``Generator`` per block ``start..stop-1`` (fast and statistically sound)."""
    return [np.random.Generator(np.random.SFC64(s)) for s in block_seeds(seed, start, stop)]
