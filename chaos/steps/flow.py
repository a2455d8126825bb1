"""Steps that shape the plan rather than the cluster: sleep, repeat, choice."""
from __future__ import annotations

from typing import Any

from chaos.context import RunContext
from chaos.steps import StepFailed, StepScope, handles, run_steps


@handles("sleep")
def sleep(step: Any, ctx: RunContext, scope: StepScope) -> None:
    scope.begin()
    if not ctx.sleep_within_limit(step.seconds):
        raise StepFailed(f"time limit of {ctx.time_limit:g}s reached during the sleep")


@handles("repeat")
def repeat(step: Any, ctx: RunContext, scope: StepScope) -> None:
    scope.begin()
    for k in range(step.times):
        run_steps(ctx, step.steps, step.path + ".repeat", f"{scope.path}.repeat[{k}]")


@handles("choice")
def choice(step: Any, ctx: RunContext, scope: StepScope) -> None:
    """The branch is drawn from the run's RNG and journaled, so replay takes it again."""
    pick = scope.resolved_or("branch", lambda: ctx.rng.randrange(len(step.branches)))
    scope.begin()
    run_steps(ctx, step.branches[pick], f"{step.path}.choice.steps[{pick}]",
              f"{scope.path}.choice.steps[{pick}]")
