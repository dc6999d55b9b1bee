"""A journey's steps as a flat program: one node per step, each naming the node that follows it.

A step's id is its own `id:` or its place: `2` (the second step), `3.yes.1` (the first step of the third's
`yes`). A branch's `yes`/`no` steps end where the branch would have gone on, so the program has no loops
and every customer reaches `end`.
"""

from __future__ import annotations

from dataclasses import dataclass

from acrm_pipelines.journeys.spec import BranchStep, Journey, SendStep, Step, WaitStep, WaitUntilStep

END = "end"


@dataclass(frozen=True)
class Node:
    id: str
    step: Step | None  # None at the end
    next: str
    yes: str = END
    no: str = END

    @property
    def kind(self) -> str:
        if self.step is None:
            return END
        return {SendStep: "send", WaitStep: "wait", WaitUntilStep: "wait_until", BranchStep: "branch"}[type(self.step)]


@dataclass(frozen=True)
class Program:
    nodes: dict[str, Node]
    first: str

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]


def step_ids(steps: list[Step], prefix: str = "") -> list[str]:
    return [step.id or f"{prefix}{i + 1}" for i, step in enumerate(steps)]


def _flatten(steps: list[Step], prefix: str, after: str, nodes: dict[str, Node]) -> str:
    """Add `steps`' nodes (going on with `after`); the id of the first, or `after` when there are none."""
    ids = step_ids(steps, prefix)
    for i, step in enumerate(steps):
        follow = ids[i + 1] if i + 1 < len(ids) else after
        yes = no = follow
        if isinstance(step, WaitUntilStep | BranchStep):
            yes = _flatten(step.yes, f"{ids[i]}.yes.", follow, nodes)
            no = _flatten(step.no, f"{ids[i]}.no.", follow, nodes)
        nodes[ids[i]] = Node(ids[i], step, follow, yes, no)
    return ids[0] if ids else after


def compile_journey(journey: Journey) -> Program:
    nodes: dict[str, Node] = {END: Node(END, None, END)}
    first = _flatten(journey.steps, "", END, nodes)
    return Program(nodes, first)


def all_steps(steps: list[Step], prefix: str = "", loc: tuple = ("steps",)):
    """(id, YAML location, step) of every step, nested ones included, in the order written."""
    for i, (step_id, step) in enumerate(zip(step_ids(steps, prefix), steps, strict=True)):
        yield step_id, [*loc, i], step
        if isinstance(step, WaitUntilStep | BranchStep):
            yield from all_steps(step.yes, f"{step_id}.yes.", (*loc, i, "yes"))
            yield from all_steps(step.no, f"{step_id}.no.", (*loc, i, "no"))
