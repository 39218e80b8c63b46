"""The time-budget guard of the Kaggle notebook: project the whole test set, pick an affordable plan.

Kaggle gives the notebook 12 h for the hidden test set (about 500 tomograms, so about 86 s each on a
T4). ``TimeBudget`` measures the tomograms done so far and projects the rest; when the projection
exceeds the budget, ``affordable`` steps down ``degradation_ladder``: TTA first (flips+rot90 -> flips ->
none), then ensemble members from the last. Members may want different TTAs (a fitted ensemble's U-Net
with flips+rot90, its detector with flips): each step caps them, so no member predicts with more than the step's
TTA. Plans are costed by forward passes (each member's TTA transforms, summed), and every measurement
under a new plan replaces the estimate.

With several devices (Kaggle's 2 x T4: one worker per GPU, each taking every second run) each worker
has a guard with ``devices=2``: it projects its own share of the hidden test set
(``ceil(expected / devices)`` tomograms) at its own pace, so two GPUs afford twice the seconds per
tomogram of one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

from cryokit.inference.tta import TTA_CHOICES, tta_transforms

__all__ = ["InferencePlan", "degradation_ladder", "TimeBudget"]


@dataclass(frozen=True)
class InferencePlan:
    """One way to predict a tomogram: a TTA cap and the ensemble members used (indices, in order).

    ``member_tta``: each member's wanted TTA, indexed like the checkpoints (all of them, not only
    ``members``); empty: every member wants ``tta``. A member predicts with the lesser of its wanted TTA
    and ``tta`` (``TTA_CHOICES`` order).
    """

    tta: str
    members: tuple[int, ...]
    member_tta: tuple[str, ...] = ()

    def tta_of(self, member: int) -> str:
        """The TTA ``member`` predicts with under this plan."""
        wanted = self.member_tta[member] if self.member_tta else self.tta
        return min(wanted, self.tta, key=TTA_CHOICES.index)

    @property
    def passes(self) -> int:
        """Forward passes over the tomogram: each member's TTA transforms, summed (the guard's cost model)."""
        return sum(len(tta_transforms(self.tta_of(m))) for m in self.members)

    def describe(self) -> str:
        if not self.member_tta:
            return f"tta={self.tta}, {len(self.members)} model(s)"
        return f"tta={', '.join(self.tta_of(m) for m in self.members)}, {len(self.members)} model(s)"

    def to_dict(self) -> dict:
        return {
            "tta": self.tta,
            "members": list(self.members),
            "member_tta": list(self.member_tta),
            "describe": self.describe(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> InferencePlan:
        return cls(data["tta"], tuple(data["members"]), tuple(data.get("member_tta", ())))


def degradation_ladder(tta: str, n_members: int, member_tta: Sequence[str] = ()) -> list[InferencePlan]:
    """Plans from the configured one down to the cheapest: TTA steps first, then members from the last.

    ``member_tta``: each member's own TTA (a fitted ensemble's, one per checkpoint), which ``tta`` and
    every step cap; empty: every member predicts with ``tta``."""
    if n_members < 1:
        raise ValueError(f"the ensemble needs at least one member, got {n_members}")
    for choice in (tta, *member_tta):
        tta_transforms(choice)  # checks the choice
    member_tta = tuple(member_tta)
    if member_tta and len(member_tta) != n_members:
        raise ValueError(f"{len(member_tta)} TTA choices ({', '.join(member_tta)}) for {n_members} member(s)")
    # with member TTAs, steps above the most expensive of them cost the same as it: start there
    top = min(tta, max(member_tta, key=TTA_CHOICES.index), key=TTA_CHOICES.index) if member_tta else tta
    all_members = tuple(range(n_members))
    steps = reversed(TTA_CHOICES[: TTA_CHOICES.index(top) + 1])
    ladder = [InferencePlan(t, all_members, member_tta) for t in steps]
    ladder += [InferencePlan("none", all_members[:n], member_tta) for n in range(n_members - 1, 0, -1)]
    return ladder


class TimeBudget:
    """Projects the total run time from the tomograms measured so far and picks an affordable plan.

    Args:
        budget_seconds: the time allowed for the whole notebook, margin included.
        expected_tomograms: tomograms the projection assumes (the hidden test set, not the 3 public ones).
        started_at: ``clock()`` when the notebook started (time spent before predicting counts too).
        clock: seconds now; ``time.time`` (tests pass a fake).
        devices: workers predicting side by side, one per device, each with its guard and an equal share
            of the tomograms; this guard projects its own share (``tomograms_per_device``).
    """

    def __init__(
        self,
        budget_seconds: float,
        expected_tomograms: int,
        started_at: float | None = None,
        clock: Callable[[], float] = time.time,
        devices: int = 1,
    ):
        if budget_seconds <= 0 or expected_tomograms < 1 or devices < 1:
            raise ValueError(
                f"budget_seconds must be > 0, expected_tomograms >= 1 and devices >= 1, got {budget_seconds}, "
                f"{expected_tomograms} and {devices}"
            )
        self.budget_seconds, self.expected_tomograms, self.clock = float(budget_seconds), int(expected_tomograms), clock
        self.devices = int(devices)
        self.started_at = clock() if started_at is None else float(started_at)
        self.samples: list[tuple[int, float]] = []  # (plan passes, seconds) per predicted tomogram

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    def record(self, plan: InferencePlan, seconds: float) -> None:
        self.samples.append((plan.passes, float(seconds)))

    def seconds_per_tomogram(self, plan: InferencePlan) -> float | None:
        """Mean measured time of ``plan``'s cost, else the latest measurements scaled by forward passes."""
        same = [s for passes, s in self.samples if passes == plan.passes]
        if same:
            return sum(same) / len(same)
        if not self.samples:
            return None
        recent = self.samples[-3:]
        return plan.passes * sum(s / p for p, s in recent) / len(recent)

    @property
    def tomograms_per_device(self) -> int:
        """This worker's share of the expected tomograms: ``ceil(expected / devices)``."""
        return -(-self.expected_tomograms // self.devices)

    def projected_total(self, plan: InferencePlan, done: float) -> float | None:
        """Seconds from the start to the last expected tomogram of this worker's share if its remaining
        ones use ``plan``; ``done``: the tomograms this worker has done."""
        per = self.seconds_per_tomogram(plan)
        return None if per is None else self.elapsed() + max(0, self.tomograms_per_device - done) * per

    def affordable(self, ladder: Sequence[InferencePlan], current: int, done: int) -> int:
        """Index of the first plan from ``current`` down the ladder whose projection fits (else the last)."""
        index = current
        while index < len(ladder) - 1:
            projected = self.projected_total(ladder[index], done)
            if projected is None or projected <= self.budget_seconds:
                break
            index += 1
        return index

    def out_of_time(self, plan: InferencePlan) -> bool:
        """True when one more tomogram with ``plan`` would end past the budget."""
        per = self.seconds_per_tomogram(plan) or 0.0
        return self.elapsed() + per > self.budget_seconds
