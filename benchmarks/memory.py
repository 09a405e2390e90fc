"""Peak memory of the Monte Carlo at N=1e5 and N=1e7, with and without per-path rows.

Each run is a fresh subprocess (``resource.getrusage`` peak RSS of that process alone):

    .venv/bin/python benchmarks/memory.py            # prints a table, writes benchmarks/memory.json
    .venv/bin/python benchmarks/memory.py --quick    # N=1e5 and 1e6 only

``keep_paths=True`` must grow only by the per-path output (``n_paths x record size``);
``keep_paths=False`` (aggregates only) must stay flat: RSS at 1e7 within 1.2x of 1e5.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import json, resource, sys, time
from peakplan.examples import synthetic_pack
from peakplan.simulate import mc
n, keep = int(sys.argv[1]), sys.argv[2] == "1"
pack = synthetic_pack(52, 8)
mc.simulate(pack, n_paths=1000, seed=1, threads=2)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
res = mc.simulate(pack, n_paths=n, seed=3, threads=2, keep_paths=keep)
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = res.metrics.nbytes
print(json.dumps({"n_paths": n, "keep_paths": keep, "peak_rss_mb": rss / 1024, "rss_after_warmup_mb": rss0 / 1024,
                  "rows_mb": rows / 2**20, "seconds": dt,
                  "cvar95_cost": res.summary.risk("cost", 0.95) if res.summary else None}))
"""


def run(n: int, keep: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), "1" if keep else "0"], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(sizes=(100_000, 10_000_000)) -> list[dict]:
    return [run(n, keep) for keep in (False, True) for n in sizes]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    sizes = (100_000, 1_000_000) if args.quick else (100_000, 10_000_000)
    rows = measure(sizes)
    print(f"{'mode':16s} {'N':>11s} {'peak RSS MB':>12s} {'rows MB':>9s} {'s':>7s}")
    for r in rows:
        mode = "per-path rows" if r["keep_paths"] else "aggregates only"
        print(f"{mode:16s} {r['n_paths']:11,d} {r['peak_rss_mb']:12.1f} {r['rows_mb']:9.1f} {r['seconds']:7.1f}")
    agg = [r for r in rows if not r["keep_paths"]]
    ratio = agg[-1]["peak_rss_mb"] / agg[0]["peak_rss_mb"]
    print(f"aggregates-only RSS ratio N={sizes[1]:,} / N={sizes[0]:,}: {ratio:.3f} (must be <= 1.2)")
    if not args.quick:
        (HERE / "memory.json").write_text(json.dumps({"runs": rows, "agg_ratio": ratio}, indent=2) + "\n")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
