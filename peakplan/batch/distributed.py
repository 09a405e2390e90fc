"""Split one large Monte Carlo run over workers, with the same numbers as a single process."""

from __future__ import annotations

import numpy as np

__all__ = ["simulate_distributed"]


def simulate_distributed(pack, plan, n_paths: int, seed, client_or_executor, blocks_per_task: int = 8):
    """Simulate ``n_paths`` paths with tasks of ``blocks_per_task`` blocks on ``client_or_executor``.

    ``client_or_executor`` is a Dask ``Client`` or a ``concurrent.futures`` executor. Every
    block of :data:`~peakplan.rng.BLOCK_PATHS` paths draws from its own spawned stream, so
    the result equals ``mc.simulate(pack, plan, n_paths, seed, engine="numpy")`` exactly,
    for every ``blocks_per_task`` and worker count. ``plan=None`` is the do-nothing baseline.
    """
    from peakplan.rng import BLOCK_PATHS, root_entropy, seed_sequence
    from peakplan.simulate import mc

    n = int(n_paths)
    if n <= 0:
        raise ValueError(f"n_paths must be positive, got {n}")
    if int(blocks_per_task) < 1:
        raise ValueError(f"blocks_per_task must be a positive integer, got {blocks_per_task}")
    ss = seed_sequence(pack.seed if seed is None else seed)
    plan = mc.plan_inputs(pack) if plan is None else plan
    nblocks = -(-n // BLOCK_PATHS)
    spans = [(b0, min(nblocks, b0 + int(blocks_per_task))) for b0 in range(0, nblocks, int(blocks_per_task))]
    ex = client_or_executor
    if hasattr(ex, "scatter"):  # Dask: send the pack and plan once to every worker
        pack_ref = ex.scatter(pack, broadcast=True, hash=False)
        plan_ref = ex.scatter(plan, broadcast=True, hash=False)
        futs = [ex.submit(mc.simulate_blocks, pack_ref, plan_ref, ss, b0, b1, n, pure=False) for b0, b1 in spans]
    else:
        futs = [ex.submit(mc.simulate_blocks, pack, plan, ss, b0, b1, n) for b0, b1 in spans]
    metrics = np.concatenate([f.result() for f in futs])
    return mc.SimResult(metrics=metrics, seed=root_entropy(ss), n_paths=n,
                        chunk_size=int(blocks_per_task) * BLOCK_PATHS)
