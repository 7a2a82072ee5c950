"""Which queued test a free device slot should run next: the scheduler's one decision,
kept pure so the service and the benchmark run the same code.

A slot takes work in this order:
1. fair share: the build with the fewest tests running now (one big build cannot starve
   the rest; ties go to the oldest build);
2. scarcity: among that build's tests this device can run, those the fewest devices can
   run (a generic test does not take the only Dolby Vision TV while an HDR test waits);
3. longest first: the longest expected duration (the tail of a run shrinks).
Pools are balanced by the candidates themselves: a test may run on any matching device
of its run's device set, whichever pool frees a slot first.

`FirstFree` is the baseline a lab starts with: the oldest queued test the device can run.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Job:
    id: int
    build: int
    candidates: frozenset[int]
    duration: float
    order: int = 0


@dataclass
class _Class:
    """Queued jobs of one build sharing one candidate set, longest first."""

    candidates: frozenset[int]
    heap: list[tuple[float, int, Job]] = field(default_factory=list)


def capable(requires: Mapping[str, Any], device: Mapping[str, Any]) -> bool:
    """Whether a device has every capability a test requires.

    Scalars match when equal to the required value (or one of a list of values); `hdr`
    and `tags` need every listed value present; `min_sdk` / `min_os` compare versions.
    """
    for key, wanted in requires.items():
        if key in ("min_sdk", "min_os"):
            have = device.get("sdk_version" if key == "min_sdk" else "os_version") or ""
            if _version(str(have)) < _version(str(wanted)):
                return False
            continue
        have = device.get(key)
        wants = wanted if isinstance(wanted, list) else [wanted]
        if isinstance(have, list):
            if key in ("hdr", "tags"):
                if not all(str(w).lower() in {str(h).lower() for h in have} for w in wants):
                    return False
            elif not {str(w).lower() for w in wants} & {str(h).lower() for h in have}:
                return False
        elif str(have or "").lower() not in {str(w).lower() for w in wants}:
            return False
    return True


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.lstrip("vV").split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        out.append(int(digits) if digits else 0)
    return tuple(out)


class Placer:
    """Queued jobs indexed for the next-slot decision (fair share, scarcity, longest)."""

    def __init__(self) -> None:
        self.classes: dict[int, dict[frozenset[int], _Class]] = defaultdict(dict)
        self.by_device: dict[int, set[tuple[int, frozenset[int]]]] = defaultdict(set)
        self.running: dict[int, int] = defaultdict(int)
        self.build_order: dict[int, int] = {}
        self.queued = 0
        self._seq = itertools.count()

    def add(self, job: Job) -> None:
        self.build_order.setdefault(job.build, len(self.build_order))
        cls = self.classes[job.build].get(job.candidates)
        if cls is None:
            cls = self.classes[job.build][job.candidates] = _Class(job.candidates)
            for device in job.candidates:
                self.by_device[device].add((job.build, job.candidates))
        heapq.heappush(cls.heap, (-job.duration, next(self._seq), job))
        self.queued += 1

    def add_all(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.add(job)

    def started(self, build: int) -> None:
        self.running[build] += 1

    def finished(self, build: int) -> None:
        self.running[build] = max(0, self.running[build] - 1)

    def take(self, device: int) -> Job | None:
        """The job this device's free slot should run now (removed from the queue)."""
        best: tuple[tuple[int, int, int, float], tuple[int, frozenset[int]]] | None = None
        empty = []
        for key in self.by_device.get(device, ()):
            build, candidates = key
            cls = self.classes[build].get(candidates)
            if cls is None or not cls.heap:
                empty.append(key)
                continue
            rank = (
                self.running[build],
                self.build_order[build],
                len(candidates),
                cls.heap[0][0],
            )
            if best is None or rank < best[0]:
                best = (rank, key)
        for key in empty:
            self._drop(key)
        if best is None:
            return None
        build, candidates = best[1]
        cls = self.classes[build][candidates]
        job = heapq.heappop(cls.heap)[2]
        if not cls.heap:
            self._drop((build, candidates))
        self.queued -= 1
        self.running[build] += 1
        return job

    def _drop(self, key: tuple[int, frozenset[int]]) -> None:
        build, candidates = key
        self.classes[build].pop(candidates, None)
        for device in candidates:
            self.by_device[device].discard(key)


class FirstFree:
    """Baseline: a free device takes the oldest queued job it can run."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.by_device: dict[int, list[tuple[int, int]]] = defaultdict(list)
        self.queued = 0
        self._seq = itertools.count()

    def add(self, job: Job) -> None:
        order = next(self._seq)
        self.jobs[job.id] = job
        for device in job.candidates:
            heapq.heappush(self.by_device[device], (order, job.id))
        self.queued += 1

    def add_all(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.add(job)

    def started(self, build: int) -> None:
        pass

    def finished(self, build: int) -> None:
        pass

    def take(self, device: int) -> Job | None:
        heap = self.by_device.get(device)
        while heap:
            _, job_id = heapq.heappop(heap)
            job = self.jobs.pop(job_id, None)
            if job is not None:
                self.queued -= 1
                return job
        return None


def place_batch(
    jobs: Sequence[Job], free: Mapping[int, int], running: Mapping[int, int]
) -> list[tuple[int, int]]:
    """Assign queued jobs to free slots (device -> free slot count) in one pass."""
    placer = Placer()
    placer.add_all(jobs)
    for build, count in running.items():
        placer.running[build] = count
    out = []
    progress = True
    slots = dict(free)
    while progress:
        progress = False
        for device in sorted(slots):
            if slots[device] <= 0:
                continue
            job = placer.take(device)
            if job is not None:
                out.append((job.id, device))
                slots[device] -= 1
                progress = True
    return out
