"""Step handlers: one small handler per step kind, registered by kind.

Theory of operation. The plan language (:mod:`chaos.plan.model`) gives every
step a ``kind``; a handler registered here under that kind carries it out on
the run's :class:`~chaos.context.RunContext`. :func:`run_step` does what every
step shares: the time limit, the ``step_started``/``step_finished`` records,
replay of resolved choices and the safety check afterwards. A handler only
resolves, calls ``scope.begin()`` once it knows what it will act on (so
``step_started.resolved`` names the sids), then acts.

A step that cannot do what it says raises :class:`StepFailed`: journaled with
``ok: false``, it ends the plan and the invariants judge what happened.
Adding a step kind: its dataclass and schema entry in ``chaos/plan``, and a
handler module here registered with :func:`handles` (DESIGN §3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol

from chaos.context import RunContext
from chaos.records import StepFinished, StepStarted

__all__ = ["StepFailed", "SetupFailure", "StepScope", "Handler", "HANDLERS", "handles", "run_step",
           "run_steps", "missing_handlers"]


class StepFailed(Exception):
    """A step could not do what it says; journaled, ends the plan."""


class SetupFailure(Exception):
    """The ensemble could not be brought up; the verdict is unknown (exit 3)."""


class Handler(Protocol):
    def __call__(self, step: Any, ctx: RunContext, scope: "StepScope") -> None: ...


HANDLERS: dict[str, Handler] = {}


def handles(*kinds: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for kind in kinds:
            if kind in HANDLERS:
                raise ValueError(f"two handlers for step kind {kind!r}")
            HANDLERS[kind] = fn
        return fn
    return register


@dataclass
class StepScope:
    """One step's journal path, its resolved choices and its ``step_started`` record."""

    ctx: RunContext
    path: str
    kind: str
    label: str
    resolved: dict[str, Any] = field(default_factory=dict)
    started: bool = False

    def begin(self) -> None:
        if not self.started:
            self.started = True
            self.ctx.record(StepStarted, step=self.path, kind=self.kind, label=self.label,
                            resolved=dict(self.resolved))

    def replayed(self) -> dict | None:
        q = self.ctx.replay.get(self.path)
        return q[0] if q else None

    def resolved_or(self, key: str, fn: Callable[[], Any]) -> Any:
        """The value ``--replay`` recorded for this step, else ``fn()``; journaled either way."""
        rep = self.replayed()
        if rep is not None and key in rep:
            val = rep[key]
            val = tuple(val) if isinstance(val, list) else val
        else:
            val = fn()
        self.resolved[key] = list(val) if isinstance(val, tuple) else val
        return val

    def fail(self, message: str) -> StepFailed:
        self.begin()
        return StepFailed(message)

    def target(self, selector: Any) -> tuple[int, ...]:
        """Resolve a node selector into at least one sid, or fail the step."""
        try:
            sids = self.resolved_or("target", lambda: self.ctx.resolve(selector))
        except Exception as e:
            raise self.fail(str(e)) from None
        if not sids:
            raise self.fail(f"'{selector}' matches no node")
        return tuple(sids)


def _label(step: Any) -> str:
    if step.label:
        return step.label
    describe = getattr(step, "describe", None)
    return describe() if callable(describe) else step.kind


def run_steps(ctx: RunContext, steps: Iterable[Any], parent_model: str = "", parent_journal: str = "") -> None:
    """Run steps in order. Inside repeat/choice the journal path carries the
    iteration (``steps[2].repeat[1].steps[0]``) where the model's has none."""
    for step in steps:
        path = step.path
        if parent_model and path.startswith(parent_model):
            path = parent_journal + path[len(parent_model):]
        run_step(ctx, step, path)


def run_step(ctx: RunContext, step: Any, path: str, resolved: Mapping[str, Any] | None = None) -> None:
    """``resolved``: what a generated step (a nemesis action) already resolved,
    journaled with it so that it can be redone as a plain step."""
    if ctx.deadline_left() <= 0:
        raise StepFailed(f"time limit of {ctx.time_limit:g}s reached before {path}")
    handler = HANDLERS.get(step.kind)
    label = _label(step)
    scope = StepScope(ctx, path, step.kind, label, dict(resolved or {}))
    ctx.progress.step = f"{path} {label}"
    ctx.progress.say(f"{path} {label}")
    ok, error = True, None
    try:
        if handler is None:
            raise scope.fail(f"no handler for step kind {step.kind!r}")
        handler(step, ctx, scope)
    except StepFailed as e:
        ok, error = False, str(e)
        raise
    except (SetupFailure, KeyboardInterrupt):
        ok, error = False, "aborted"
        raise
    except BaseException as e:  # infrastructure errors, Interrupted
        ok, error = False, "aborted" if not isinstance(e, Exception) else f"{type(e).__name__}: {e}"
        raise
    finally:
        scope.begin()
        ctx.record(StepFinished, step=path, kind=step.kind, label=label, resolved=scope.resolved,
                   ok=ok, error=error)
        if scope.resolved or not ok:
            shown = ", ".join(f"{k}={v}" for k, v in scope.resolved.items()
                              if k in ("target", "node", "leader", "branch", "links", "blocked"))
            ctx.progress.say(f"{path} {'ok' if ok else 'FAILED: ' + str(error)}" + (f" ({shown})" if shown else ""))
        if ctx.replay.get(path):
            ctx.replay[path].pop(0)
    ctx.after_step()


def missing_handlers(kinds: Iterable[str]) -> list[str]:
    return sorted(set(kinds) - set(HANDLERS))


# Handler modules register themselves on import.
from chaos.steps import flow, lifecycle, links, nemesis, nodes, power, waits, wire  # noqa: E402,F401
