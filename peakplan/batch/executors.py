"""Executors: run case tasks in a local process pool (default), on Dask, or in process.

Each executor calls ``on_start(task)`` when a case starts and ``on_done(outcome)`` when it
ends; a worker process that dies fails only its own case. :class:`BatchProgress` shows
done, running, failed and the ETA.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import multiprocessing as mp
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from peakplan.batch.worker import CaseOutcome, CaseTask
from peakplan.errors import InputError

__all__ = ["BatchProgress", "dask_client", "run_dask", "run_inline", "run_local", "usable_cores"]


def usable_cores() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)



class BatchProgress:
    """Done, running, failed and ETA: a rich live bar on a terminal, plain lines in logs."""

    def __init__(self, total: int, *, skipped: int = 0, label: str = "batch", stream=None,
                 live: bool | None = None, enabled: bool = True) -> None:
        self.total, self.skipped, self.enabled = total, skipped, enabled
        self.stream = sys.stderr if stream is None else stream
        self.live = bool(self.stream.isatty()) if live is None else live
        self.done = self.failed = self.running = 0
        self.t0 = time.perf_counter()
        self._bar = None
        if not enabled:
            return
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[running]} running"),
                                 TextColumn("[red]{task.fields[failed]} failed"),
                                 TextColumn("ETA {task.fields[eta]}"), TimeElapsedColumn(),
                                 console=Console(file=self.stream), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=skipped, running=0, failed=0, eta="?")
        else:
            self._line(f"{label}: {total} case(s), {skipped} already complete (skipped), "
                       f"{total - skipped} to run")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def eta(self) -> str:
        left = self.total - self.skipped - self.done
        if self.done == 0:
            return "?"
        secs = left * (time.perf_counter() - self.t0) / self.done
        return str(dt.timedelta(seconds=round(secs)))

    def started(self, name: str) -> None:
        self.running += 1
        self._refresh()

    def finished(self, name: str, status: str, elapsed: float, error: str | None = None) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        self.failed += status != "ok"
        if not self.enabled:
            return
        first = (error or "").splitlines()[0] if error else ""
        if self._bar is not None:
            if status != "ok":
                self._bar.console.print(f"[red]{status}[/red] {name}: {first}")
            self._refresh()
            return
        n = self.skipped + self.done
        self._line(f"[{n:>{len(str(self.total))}}/{self.total}] {status:<10} {name} ({elapsed:.1f} s) | "
                   f"running {self.running}, failed {self.failed}, ETA {self.eta()}"
                   + (f"\n    {first}" if first else ""))

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.skipped + self.done, running=self.running,
                             failed=self.failed, eta=self.eta())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


# =====================================================================================
# Executors
# =====================================================================================
def _mp_context():
    methods = mp.get_all_start_methods()
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["peakplan.batch", "peakplan.pipeline"])
        return ctx
    return mp.get_context("spawn")  # pragma: no cover - non-POSIX


class _SlotPool:
    """``n`` single-process executors: a crashed worker breaks only its own slot's case."""

    def __init__(self, n: int) -> None:
        self.ctx = _mp_context()
        self.slots = [ProcessPoolExecutor(1, mp_context=self.ctx) for _ in range(n)]

    def renew(self, i: int) -> None:
        self.slots[i].shutdown(wait=False, cancel_futures=True)
        self.slots[i] = ProcessPoolExecutor(1, mp_context=self.ctx)

    def shutdown(self, wait_: bool = True) -> None:
        for ex in self.slots:
            ex.shutdown(wait=wait_, cancel_futures=not wait_)


def _crash_error(exc: BaseException) -> str:
    return (f"worker process died while running this case ({type(exc).__name__}: {exc}); "
            f"the machine may be out of memory, or the process was killed")


def run_local(tasks: list[CaseTask], workers: int, runner: Callable, on_start, on_done) -> None:
    """Run ``tasks`` on ``workers`` local worker processes, one single-process executor each."""
    pending = deque(tasks)
    pool = _SlotPool(min(workers, len(tasks)))
    free = list(range(len(pool.slots)))[::-1]
    inflight: dict = {}
    ok = False
    try:
        while pending or inflight:
            while pending and free:
                slot, task = free.pop(), pending.popleft()
                inflight[pool.slots[slot].submit(runner, task)] = (slot, task, time.perf_counter())
                on_start(task)
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            outcomes = []
            for fut in done:
                slot, task, t0 = inflight.pop(fut)
                try:
                    outcomes.append(fut.result())
                except BrokenProcessPool as exc:
                    outcomes.append(CaseOutcome(task.name, task.key, "failed", _crash_error(exc),
                                                time.perf_counter() - t0))
                    pool.renew(slot)
                except Exception as exc:
                    outcomes.append(CaseOutcome(task.name, task.key, "failed", f"{type(exc).__name__}: {exc}",
                                                time.perf_counter() - t0))
                free.append(slot)
            while pending and free:  # refill first, so the progress line counts what runs now
                slot, task = free.pop(), pending.popleft()
                inflight[pool.slots[slot].submit(runner, task)] = (slot, task, time.perf_counter())
                on_start(task)
            for outcome in outcomes:
                on_done(outcome)
        ok = True
    finally:
        pool.shutdown(wait_=ok)


def run_dask(tasks: list[CaseTask], client, runner: Callable, on_start, on_done) -> None:
    """Run ``tasks`` on a Dask ``client``; a killed worker fails only its case."""
    from distributed import as_completed

    futs = {}
    for task in tasks:
        fut = client.submit(runner, task, key=f"peakplan-case-{task.name}-{uuid.uuid4().hex[:8]}", pure=False)
        futs[fut] = (task, time.perf_counter())
    n_workers = max(1, sum(client.nthreads().values()))  # tasks that can run at once
    for task in tasks[:n_workers]:
        on_start(task)
    started = min(n_workers, len(tasks))
    for fut in as_completed(list(futs)):
        task, t0 = futs[fut]
        try:
            outcome = fut.result()
        except Exception as exc:  # KilledWorker, lost connection, ...
            outcome = CaseOutcome(task.name, task.key, "failed", _crash_error(exc) if "Killed" in type(exc).__name__
                                  else f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
        on_done(outcome)
        if started < len(tasks):
            on_start(tasks[started])
            started += 1


def run_inline(tasks: list[CaseTask], runner: Callable, on_start, on_done) -> None:
    """Run ``tasks`` one after the other in this process (``--workers 0``: tests, debugging)."""
    for task in tasks:
        on_start(task)
        on_done(runner(task))


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, local_workers: int | None = None) -> Iterator:
    """A Dask client on ``scheduler`` (``tcp://host:port``) or on a new LocalCluster; closed after."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("Dask is not installed; install peakplan[dask] (dask[distributed]) or use --workers") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise InputError(f"--dask-scheduler {scheduler}: cannot connect: {exc}") from None
        with client:
            yield client
        return
    n = int(local_workers or usable_cores())
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client
