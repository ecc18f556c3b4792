"""Celery's canvas: signatures, `chain`, `group` and `chord`, combined with `|` and nested freely.

A canvas only describes a workflow; `conveyor.workflow_graph` compiles it into the contract's
WorkflowSpec, and `submit()` sends it (WorkflowService). Result passing is Celery's: a step
after one task gets that task's result as its first argument, a step after a group gets the
list of the group's results (a group followed by a step is a chord), and an immutable
signature (`task.si(...)`) gets nothing, only waiting for what comes before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from conveyor.common import Call
from conveyor.options import SubmitOptions

if TYPE_CHECKING:
    from conveyor.aio import AsyncClient
    from conveyor.client import Client
    from conveyor.workflows import AsyncWorkflowHandle, WorkflowHandle

OnFailure = Literal["fail_fast", "continue"]
"""What a failed node does to its workflow (FailurePolicy): end it at once, or let every
node run and hand its failure on to its children."""


class Canvas:
    """What can be chained, grouped and submitted: a Signature, chain, group or chord."""

    __slots__ = ()

    def __or__(self, other: Canvas | Call) -> Composite:
        """`a | b`: b runs after a, given a's result (a's list of results when a is a group)."""
        if not isinstance(other, Call | Canvas):
            return NotImplemented
        return chain(self, other)

    def __ror__(self, other: Call) -> Composite:
        """`Call(...) | sig`: a plain Call (what `Client.submit_many` takes) on the left."""
        if not isinstance(other, Call):
            return NotImplemented
        return chain(other, self)

    def signatures(self) -> Iterator[Signature]:
        """Every task of the canvas, in the order they become nodes."""
        raise NotImplementedError

    def submit(self, *, client: Client | None = None, on_failure: OnFailure = "fail_fast",
               name: str | None = None) -> WorkflowHandle:
        """Submits the canvas as one workflow, via `client` or else the client of the app its
        tasks belong to (`task.s()` remembers it); see Client.submit_workflow."""
        return (client or self._app("client").client).submit_workflow(self, on_failure=on_failure, name=name)

    async def asubmit(self, *, client: AsyncClient | None = None, on_failure: OnFailure = "fail_fast",
                      name: str | None = None) -> AsyncWorkflowHandle:
        """`submit` on an AsyncClient (else the app's `aclient`)."""
        via = client or self._app("aclient").aclient
        return await via.submit_workflow(self, on_failure=on_failure, name=name)

    def _app(self, which: str) -> Any:
        for sig in self.signatures():
            if sig.app is not None:
                return sig.app
        raise ValueError(f"no app to submit with (the canvas has no `task.s()` signature): pass {which}=")


@dataclass(frozen=True, slots=True)
class Signature(Call, Canvas):
    """A task with its arguments and options (Celery's signature), made by `task.s(...)`,
    `task.si(...)` or `signature(name, ...)`. It is a `Call`, so `submit_many` takes it as before;
    a subclass, rather than new fields on Call, so that the plain Call stays free of the canvas."""

    immutable: bool = False
    """Gets no result from the steps before it (`.si()`); it still waits for them."""
    app: Any = field(default=None, compare=False, repr=False)
    """The App of the task that made it, whose client `submit()` uses."""

    def signatures(self) -> Iterator[Signature]:
        yield self

    def set(self, *, immutable: bool | None = None, **options: Any) -> Signature:
        """A copy with other submit options (queue=, priority=, ...; Celery's `.set`), or made
        (im)mutable."""
        merged = replace(self.options, **options) if options else self.options
        return replace(self, options=merged, immutable=self.immutable if immutable is None else immutable)

    def __repr__(self) -> str:
        args = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"{self.name}.{'si' if self.immutable else 's'}({', '.join(args)})"


def signature(name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, *,
              immutable: bool = False, **options: Any) -> Signature:
    """A signature by task name, without the task's definition (Celery's `signature`);
    options are SubmitOptions fields."""
    return Signature(name, tuple(args), dict(kwargs or {}), SubmitOptions(**options), immutable)


def as_canvas(item: object) -> Canvas:
    """The canvas `item` is: itself, or a plain Call as a mutable signature without an app."""
    if isinstance(item, Canvas):
        return item
    if isinstance(item, Call):
        return Signature(item.name, item.args, item.kwargs, item.options)
    raise TypeError(f"a canvas is made of signatures (task.s(...)), chains, groups and chords, not {item!r}")


def _items(tasks: tuple[Any, ...]) -> list[Canvas]:
    """`f(a, b, c)` or `f(iterable)` (Celery takes both); a lone canvas is not an iterable of them."""
    if len(tasks) == 1 and not isinstance(tasks[0], Call | Canvas) and isinstance(tasks[0], Iterable):
        tasks = tuple(tasks[0])
    return [as_canvas(t) for t in tasks]


class Composite(Canvas):
    """A chain, group or chord: calling one submits it, as in Celery (a Signature is not called:
    Celery's `sig()` runs the task in the caller's process)."""

    __slots__ = ()

    def __call__(self, *, client: Client | None = None, on_failure: OnFailure = "fail_fast",
                 name: str | None = None) -> WorkflowHandle:
        """Submits it, as Celery's `chain(...)()` and `group(...)()` do."""
        return self.submit(client=client, on_failure=on_failure, name=name)


class chain(Composite):  # noqa: N801 - Celery's name
    """Steps run one after another, each given the previous step's result as its first
    argument: `chain(a.s(1), b.s())` is `a.s(1) | b.s()`. Nested chains are flattened."""

    __slots__ = ("tasks",)
    tasks: tuple[Canvas, ...]

    def __init__(self, *tasks: Canvas | Call | Iterable[Canvas | Call]) -> None:
        flat: list[Canvas] = []
        for step in _items(tasks):
            flat += step.tasks if isinstance(step, chain) else [step]
        self.tasks = tuple(flat)

    def signatures(self) -> Iterator[Signature]:
        for step in self.tasks:
            yield from step.signatures()

    def __eq__(self, other: object) -> bool:
        return type(other) is chain and self.tasks == other.tasks

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks)


class group(Composite):  # noqa: N801 - Celery's name
    """Tasks that run in parallel, each given the same input; what follows a group gets the
    list of their results in the group's order (a chord). Takes the tasks or one iterable
    of them: `group(a.s(i) for i in range(100))`. A group inside a group is flattened."""

    __slots__ = ("tasks",)
    tasks: tuple[Canvas, ...]

    def __init__(self, *tasks: Canvas | Call | Iterable[Canvas | Call]) -> None:
        flat: list[Canvas] = []
        for member in _items(tasks):
            flat += member.tasks if isinstance(member, group) else [member]
        self.tasks = tuple(flat)

    def __or__(self, other: Canvas | Call) -> Composite:
        """`group | step` is a chord (Celery upgrades it so); `group | group` stays a chain."""
        if isinstance(other, Call | Canvas) and not isinstance(other, group):
            return chord(self, other)
        return super().__or__(other)

    def signatures(self) -> Iterator[Signature]:
        for member in self.tasks:
            yield from member.signatures()

    def __len__(self) -> int:
        return len(self.tasks)

    def __eq__(self, other: object) -> bool:
        return type(other) is group and self.tasks == other.tasks

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"group({', '.join(repr(t) for t in self.tasks)})"


class chord(Composite):  # noqa: N801 - Celery's name
    """A group (the header) and a callback (the body) that gets the list of the header's
    results, in header order: `chord(header, body)`, or `chord(header)(body)`, which submits
    it as Celery's does. The header may be a group, an iterable of tasks, or one canvas."""

    __slots__ = ("body", "header")
    header: group
    body: Canvas | None

    def __init__(self, header: group | Canvas | Call | Iterable[Canvas | Call],
                 body: Canvas | Call | None = None) -> None:
        self.header = header if isinstance(header, group) else group(header)
        self.body = None if body is None else as_canvas(body)

    def __call__(self, body: Canvas | Call | None = None, *, client: Client | None = None,
                 on_failure: OnFailure = "fail_fast", name: str | None = None) -> WorkflowHandle:
        """Submits the chord, with `body` as its callback (Celery's `chord(header)(callback)`)."""
        whole = self if body is None else chord(self.header, body)
        return whole.submit(client=client, on_failure=on_failure, name=name)

    def signatures(self) -> Iterator[Signature]:
        yield from self.header.signatures()
        if self.body is not None:
            yield from self.body.signatures()

    def __eq__(self, other: object) -> bool:
        return type(other) is chord and (self.header, self.body) == (other.header, other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"
