"""Fit a training stage to its time: a few steps into the second epoch, the real step times set
how many steps it trains.

Why: a `--budget` build sizes the first sft stage (train/budget.py fit_after_data) from speeds
measured in a few steps before the data exists. Those ran 5-20 % below the real run (builds v5
and v7 of docs/results/specialist-qwen0.5b.md) and, with the margin kept for that error, a build
on a slower VM left ~15 minutes unused that more epochs would have paid for. With a time limit,
the stage runs for up to the recipe's epochs; once the first epoch and PROBE_STEPS cached steps
(train/layer_cache.py) have been timed, TimeFit sets the step count that ends within the limit.
The Trainer stops there and the schedule (cosine) is redrawn to end there too: it is never
lengthened past what the Trainer was started with, so a fast machine trains exactly as without a
limit. The decision is written to `time-fit.json` in the stage folder, so a run resumed after a
kill keeps it.

    cb = TimeFit(limit_s=2700, planned_steps=230, record=stage_dir / "time-fit.json")
    SFTTrainer(..., callbacks=[cb]).train()    # cb.summary() -> the manifest's metrics
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from assistant.files import atomic_write_text

PROBE_STEPS = 4   # cached steps timed before deciding (the first pays the cache's first reads)
TAIL_S = 30.0     # after the last step: merge the adapter, save the model (0.5B: ~12 s)


def steps_that_fit(limit_s: float, elapsed_s: float, step: int, cached_step_s: float, most: int) -> int:
    """The step count (between step + 1 and `most`) that ends within `limit_s` when `elapsed_s`
    have gone at `step` and each further step takes `cached_step_s`."""
    room = limit_s - TAIL_S - elapsed_s
    more = math.floor(room / cached_step_s) if cached_step_s > 0 else most
    return max(step + 1, min(most, step + more))


def redraw_schedule(lr_scheduler, args, horizon: int, warmup: int) -> None:
    """Give the Trainer's LambdaLR schedule a new length (same type and warm-up), and set the
    learning rate the next step uses from it."""
    import torch
    from transformers import get_scheduler

    sched = getattr(lr_scheduler, "scheduler", lr_scheduler)  # accelerate may wrap it
    if not hasattr(sched, "lr_lambdas"):
        return  # not a LambdaLR schedule: it keeps its length
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    fresh = get_scheduler(args.lr_scheduler_type, optimizer=probe, num_warmup_steps=warmup,
                          num_training_steps=horizon, scheduler_specific_kwargs=args.lr_scheduler_kwargs)
    sched.lr_lambdas = [fresh.lr_lambdas[0] for _ in sched.optimizer.param_groups]
    for group, base, fn in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
        group["lr"] = base * fn(sched.last_epoch)
    sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


def make_time_fit(limit_s: float, planned_steps: int | None, record: Path, started: float | None = None):
    """A TrainerCallback (see the module docstring). `limit_s`: seconds the stage may take from
    `started` (time.perf_counter(); default: when training begins); `planned_steps`: the budget
    plan's estimate, the schedule's length until the decision."""
    from transformers import TrainerCallback

    class TimeFit(TrainerCallback):
        def __init__(self):
            self.record = Path(record)
            self.started = started
            self.decision: dict | None = None
            self.step_s: dict[int, float] = {}

        def on_train_begin(self, args, state, control, lr_scheduler=None, train_dataloader=None, **kw):
            self.started = self.started or time.perf_counter()
            self.last = time.perf_counter()
            self.resumed_at = state.global_step
            self.most = state.max_steps
            self.epoch_steps = math.ceil(len(train_dataloader) / max(1, args.gradient_accumulation_steps))
            self.decide_at = self.epoch_steps + PROBE_STEPS
            self.warmup = args.get_warmup_steps(self.most)
            self.scheduler = lr_scheduler
            if self.record.is_file():
                self.decision = json.loads(self.record.read_text(encoding="utf-8"))
                self._apply(args, state, self.decision["steps"])
            elif self.decide_at < self.most:
                # until the decision: the plan's length, but never ending before the decision
                self._redraw(args, min(self.most, max(planned_steps or self.most, self.decide_at + 1)))

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.step_s[state.global_step] = now - self.last
            self.last = now
            if self.decision is None and state.global_step >= self.decide_at:
                self._decide(args, state, "measured", self._cached_step_s())
            elif self.decision is None and self._elapsed() >= limit_s - TAIL_S:
                self._decide(args, state, "time limit reached", None)
            if state.global_step >= state.max_steps:
                control.should_training_stop = True  # DefaultFlowCallback ran before this decision

        def _full_steps(self) -> list[float]:
            """Times of the first epoch's steps seen here, the first (warm-up) left out."""
            return [s for i, s in self.step_s.items() if 1 < i <= self.epoch_steps]

        def _cached_step_s(self) -> float:
            later = [s for i, s in self.step_s.items() if i > self.epoch_steps + 1] or list(self.step_s.values())
            return sum(later) / len(later)

        def _elapsed(self) -> float:
            """Seconds of the stage so far; steps before a resume are charged at this process's
            mean full / cached step time."""
            elapsed = time.perf_counter() - self.started
            if self.resumed_at:
                full = self._full_steps() or list(self.step_s.values())
                elapsed += min(self.resumed_at, self.epoch_steps) * sum(full) / len(full)
                if self.resumed_at > self.epoch_steps:
                    elapsed += (self.resumed_at - self.epoch_steps) * self._cached_step_s()
            return elapsed

        def _decide(self, args, state, why: str, cached_step_s: float | None) -> None:
            step = state.global_step
            if cached_step_s is None:
                steps = step
            else:
                steps = steps_that_fit(limit_s, self._elapsed(), step, cached_step_s, self.most)
            full = self._full_steps()
            self.decision = {"steps": steps, "of": self.most, "at_step": step, "why": why,
                             "epochs": round(steps / self.epoch_steps, 2), "limit_s": round(limit_s, 1),
                             "full_step_s": round(sum(full) / len(full), 2) if full else None,
                             "cached_step_s": round(cached_step_s, 2) if cached_step_s else None}
            atomic_write_text(self.record, json.dumps(self.decision, indent=2))
            self._apply(args, state, steps)

        def _apply(self, args, state, steps: int) -> None:
            state.max_steps = steps           # the Trainer stops at it (DefaultFlowCallback)
            if steps > state.global_step:
                self._redraw(args, steps)

        def _redraw(self, args, horizon: int) -> None:
            if self.scheduler is not None:
                redraw_schedule(self.scheduler, args, horizon, self.warmup)

        def summary(self) -> dict:
            return dict(self.decision or {"steps": None, "why": "no decision (one epoch or less)"})

    return TimeFit()
