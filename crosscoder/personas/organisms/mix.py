"""Data mixes for organism training: several chat sets whose shares change over the steps.

A checkpoint series needs a fine-tune whose persona *grows* (the persona set's share rising from 0 to 1 over the
run) or one that first learns a persona and later learns to hide it (a second phase that mixes in other data).
A :class:`DataMix` names its sources and a list of phases; within a phase each source's share of a batch moves
linearly from ``start`` to ``end``. :func:`plan_batches` turns it into the exact (source, example) pairs of every
step: deterministic for a seed, so an interrupted build resumes on the same batches. Shares are realised by error
diffusion, so a share of 0.1 at batch size 8 gives one example every 1.25 steps on average rather than rounding to
zero or one every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from crosscoder.errors import ConfigError
from crosscoder.io import sha256_file, sha256_json

_TOL = 1e-6


@dataclass(frozen=True)
class MixPhase:
    """A stretch of training steps with linearly changing source shares."""

    steps: int
    """Optimiser steps in this phase."""
    start: tuple[float, ...]
    """Each source's share of a batch at the phase's first step (sums to 1)."""
    end: tuple[float, ...]
    """Each source's share at the phase's last step (sums to 1); shares in between are interpolated linearly."""

    def share(self, t: int) -> list[float]:
        """The shares at step `t` of this phase (0-based)."""
        frac = t / (self.steps - 1) if self.steps > 1 else 1.0
        return [a + (b - a) * frac for a, b in zip(self.start, self.end, strict=True)]


@dataclass(frozen=True)
class DataMix:
    """Chat SFT sets (JSONL) mixed by a schedule of phases."""

    sources: tuple[str, ...]
    """Paths of the chat JSONL sets, in the order the phases' shares refer to."""
    phases: tuple[MixPhase, ...]
    """The schedule; the total number of steps is the sum of the phases' steps."""
    names: tuple[str, ...] = field(default=())
    """Short names of the sources for logs and metadata (default: file stems)."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("data mix: no sources; give at least one chat JSONL set")
        if not self.phases:
            raise ConfigError("data mix: no phases; give at least one phase with steps and shares")
        if self.names and len(self.names) != len(self.sources):
            raise ConfigError(f"data mix: {len(self.names)} names for {len(self.sources)} sources")
        for i, ph in enumerate(self.phases):
            if ph.steps < 1:
                raise ConfigError(f"data mix: phase {i} has {ph.steps} steps; must be >= 1")
            for what, shares in (("start", ph.start), ("end", ph.end)):
                if len(shares) != len(self.sources):
                    raise ConfigError(
                        f"data mix: phase {i} {what} has {len(shares)} shares for {len(self.sources)} sources"
                    )
                if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > _TOL:
                    raise ConfigError(f"data mix: phase {i} {what} shares {list(shares)} must be >= 0 and sum to 1")

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def source_names(self) -> list[str]:
        return list(self.names) if self.names else [Path(s).stem for s in self.sources]

    def shares_at(self, step: int) -> list[float]:
        """The sources' shares at global step `step` (0-based)."""
        for ph in self.phases:
            if step < ph.steps:
                return ph.share(step)
            step -= ph.steps
        raise IndexError(f"step beyond the mix's {self.total_steps} steps")

    def identity(self) -> str:
        """A hash of the sources' contents and the schedule (part of an organism's cache key)."""
        return sha256_json([[sha256_file(Path(s)) for s in self.sources], [asdict(p) for p in self.phases]])

    def describe(self) -> dict[str, object]:
        """JSON-ready description for metadata."""
        return {
            "sources": dict(zip(self.source_names(), self.sources, strict=True)),
            "phases": [asdict(p) for p in self.phases],
        }


def _counts(desired: list[float], batch_size: int) -> list[int]:
    """Integer counts summing to `batch_size`, closest to `desired` (largest remainder)."""
    floors = [max(0, int(d // 1)) for d in desired]
    left = batch_size - sum(floors)
    order = sorted(range(len(desired)), key=lambda i: desired[i] - floors[i], reverse=True)
    for i in order[: max(left, 0)]:
        floors[i] += 1
    while sum(floors) > batch_size:  # only when the desired counts overshoot; trim the largest
        floors[max(range(len(floors)), key=lambda i: floors[i])] -= 1
    return floors


def plan_batches(mix: DataMix, sizes: list[int], batch_size: int, seed: int) -> list[list[tuple[int, int]]]:
    """(source, example index) pairs of every step's batch.

    Each source is read in seeded permutations (every example once before any repeats); counts per step follow
    the shares by error diffusion, so the realised share over a stretch of steps matches the schedule.
    """
    import random

    if len(sizes) != len(mix.sources):
        raise ConfigError(f"data mix: {len(sizes)} source sizes for {len(mix.sources)} sources")
    rng = random.Random(seed)
    orders: list[list[int]] = [[] for _ in sizes]
    carry = [0.0] * len(sizes)
    plan: list[list[tuple[int, int]]] = []
    for step in range(mix.total_steps):
        shares = mix.shares_at(step)
        desired = [s * batch_size + c for s, c in zip(shares, carry, strict=True)]
        counts = _counts(desired, batch_size)
        carry = [d - n for d, n in zip(desired, counts, strict=True)]
        batch: list[tuple[int, int]] = []
        for src, n in enumerate(counts):
            if n and sizes[src] == 0:
                raise ConfigError(f"data mix: source {mix.source_names()[src]} is empty but has a share at step {step}")
            for _ in range(n):
                if not orders[src]:
                    orders[src] = rng.sample(range(sizes[src]), sizes[src])
                batch.append((src, orders[src].pop()))
        plan.append(batch)
    return plan
