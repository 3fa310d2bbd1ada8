"""Where a sweep's jobs run: in this process, in a local process pool, or as Ray tasks.

Every executor turns a job into a `concurrent.futures.Future` of an `Outcome`, so the scheduler
(splitleak.sweep.runner) is the same for all three. `capacity` is how many jobs the scheduler
keeps in flight: 1 inline, the pool size for processes, unbounded for Ray (Ray queues tasks by
their declared resources).

Threads: torch uses every core by default, so N processes each with the default would run
N x cores threads on the cores (measured on 2 cores: two 2-thread processes made torch ops 10-100x
slower). Pool workers therefore set `torch.set_num_threads(cores // workers)` (at most
`$OMP_NUM_THREADS` when it is set; or `threads`), and a Ray task sets it to the CPUs it declared.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from splitleak.errors import InputError
from splitleak.progress import ProgressFactory, silent
from splitleak.sweep.jobs import Job, Outcome, run_job

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


def usable_cores() -> int:
    """CPU cores this process may run on (affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def env_threads() -> int | None:
    """`$OMP_NUM_THREADS` as a whole number >= 1 (None when unset or not such a number; torch
    itself sizes its pool from it at import)."""
    try:
        value = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def worker_threads(workers: int) -> int:
    """Torch threads per worker when none are asked for: the cores split between `workers`, and at
    most `$OMP_NUM_THREADS` when it is set (so workers x threads <= cores)."""
    share = max(1, usable_cores() // workers)
    limit = env_threads()
    return share if limit is None else min(share, limit)


class Executor(Protocol):
    capacity: int
    description: dict[str, object]

    def submit(self, job: Job) -> Future[Outcome]: ...

    def close(self, *, cancel: bool = False) -> None: ...


class InlineExecutor:
    """Runs each job in this process when it is submitted (sequential, no pickling)."""

    capacity = 1

    def __init__(self, threads: int | None = None, progress: ProgressFactory = silent) -> None:
        self.threads = threads
        self.progress = progress  # in this process only: the stages of each job, as the CLI shows them
        self.description: dict[str, object] = {"kind": "local", "workers": 1, "threads": threads}

    def submit(self, job: Job) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        future.set_result(run_job(dataclasses.replace(job, threads=self.threads) if self.threads else job, progress=self.progress))
        return future

    def close(self, *, cancel: bool = False) -> None:
        return None


def _init_worker(threads: int, parent: int | None = None) -> None:
    import torch

    if parent is not None:
        exit_with_parent(parent)

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (only possible before any parallel work)
        pass


def exit_with_parent(parent: int, poll: float = 1.0) -> threading.Thread:
    """End this worker when the sweep process `parent` is gone (killed by SIGTERM or SIGKILL,
    which give the pool no chance to stop its workers): a daemon thread checks every `poll`
    seconds. Without it an orphaned worker runs its cell to the end, competing with the next
    sweep for the cores; its cell's files are written atomically, so stopping it loses only that
    cell's unfinished work."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(1)

    thread = threading.Thread(target=watch, name="splitleak-exit-with-parent", daemon=True)
    thread.start()
    return thread


class ProcessExecutor:
    """A pool of `workers` fresh ("spawn") processes, each limited to `threads` torch threads.

    A worker that dies (killed, out of memory) fails the jobs it had; the pool is then rebuilt
    for the jobs still to come.
    """

    def __init__(self, workers: int, threads: int | None = None) -> None:
        if workers < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        self.capacity = workers
        self.threads = threads if threads is not None else worker_threads(workers)
        self.description = {"kind": "local", "workers": workers, "threads": self.threads}
        self._pool = self._new_pool()

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker, initargs=(self.threads, os.getpid())
        )

    def submit(self, job: Job) -> Future[Outcome]:
        job = dataclasses.replace(job, threads=self.threads)
        try:
            return self._pool.submit(run_job, job)
        except BrokenProcessPool:
            log.warning("a sweep worker died; starting a new process pool")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(run_job, job)

    def close(self, *, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)


class RayExecutor:
    """Each job is a Ray task declaring `num_cpus` (its torch threads) and, on cuda, `num_gpus`.

    Connects to `address` (or $RAY_ADDRESS, or starts a local instance) unless Ray is already
    initialised in this process, in which case that instance is used and left running.
    """

    capacity = math.inf

    def __init__(self, address: str | None = None, cpus_per_task: int = 1, gpus_per_task: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("the ray executor needs Ray: pip install 'splitleak[ray]'") from None
        if cpus_per_task < 1:
            raise InputError(f"cpus per task must be >= 1, got {cpus_per_task}")
        if not gpus_per_task > 0:
            raise InputError(f"gpus per task must be > 0, got {gpus_per_task}")
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        self.cpus = cpus_per_task
        self.gpus = gpus_per_task
        self._remote = ray.remote(run_job)
        self._refs: list[object] = []
        self.description = {"kind": "ray", "address": address, "cpus_per_task": cpus_per_task, "gpus_per_task": gpus_per_task}

    def resources(self, job: Job) -> dict[str, float]:
        gpus = self.gpus if job.device.startswith("cuda") else 0
        return {"num_cpus": self.cpus, "num_gpus": gpus}

    def submit(self, job: Job) -> Future[Outcome]:
        job = dataclasses.replace(job, threads=self.cpus)
        ref = self._remote.options(**self.resources(job), name=f"splitleak:{job.label}", max_retries=1).remote(job)
        self._refs.append(ref)
        return ref.future()  # type: ignore[attr-defined]

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished or already gone
                    pass
        if self._owned:
            self._ray.shutdown()


def make_executor(
    kind: str = "local", *, workers: int = 1, threads: int | None = None, ray_address: str | None = None, cpus_per_task: int = 1, gpus_per_task: float = 1.0,
    progress: ProgressFactory = silent,
) -> Executor:
    """The executor `kind` ("local" or "ray"); local with workers > 1 is a process pool.
    `progress` shows the stages of jobs run in this process (workers == 1)."""
    if kind == "local":
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a whole number >= 1, got {workers!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a whole number >= 1, got {threads!r}")
        return InlineExecutor(threads, progress) if workers == 1 else ProcessExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(ray_address, cpus_per_task, gpus_per_task)
    raise InputError(f"unknown executor {kind!r}; choose from {list(EXECUTORS)}")
