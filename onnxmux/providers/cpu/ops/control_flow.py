"""Control flow: If, Loop and Scan, which run compiled subgraphs.

Each factory checks the body's signature against the node at session creation, compiles the
bodies once, and precomputes what the per-iteration path needs, so one iteration costs a body
run and a few list operations. Outer-scope values read by the bodies arrive after the node's
explicit inputs and are forwarded unchanged to every body run.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import onnx_ir as ir

from onnxmux.core import run_control
from onnxmux.core.context import NodeContext
from onnxmux.core.types import TypeInfo
from onnxmux.providers.cpu.registry import op

_FLOAT32 = np.dtype(np.float32)


def _graph_attr(ctx: NodeContext, name: str) -> ir.Graph:
    """The graph held in attribute ``name``; a missing or non-graph attribute is an InvalidGraph."""
    graph = ctx.attr(name)
    if not isinstance(graph, ir.Graph):
        raise ctx.error(f"attribute '{name}' is not a graph")
    return graph


def _is_sequence_like(value: ir.Value, declared: TypeInfo | None) -> bool:
    """Whether a scan output collects its per-iteration values into a list instead of a stack:
    the node declares it a sequence, or the body yields sequences or optionals."""
    if declared is not None and declared.kind == "sequence":
        return True
    return isinstance(value.type, (ir.SequenceType, ir.OptionalType))


def _element_type(
    value: ir.Value, declared: TypeInfo | None, stack_axes: Sequence[int]
) -> tuple[np.dtype, tuple[int, ...] | None]:
    """The dtype and shape of one iteration's value of a scan output, from the declared types.

    ``value`` is the body output; ``declared`` the node output, in which ``stack_axes`` are
    the axes the iterations (and batch) were stacked along. Unknown dims count as 0 (the
    stack is empty anyway); the shape is None when even the rank is unknown.
    """
    dtype = None
    if isinstance(value.type, ir.TensorType):
        try:
            dtype = value.type.dtype.numpy()
        except (TypeError, ValueError, NotImplementedError):
            dtype = None
    if dtype is None and declared is not None and declared.kind == "tensor":
        dtype = declared.dtype
    dims = value.shape
    if dims is None and declared is not None and declared.shape is not None:
        rank = len(declared.shape)
        if all(-rank <= a < rank for a in stack_axes):
            dropped = {a % rank for a in stack_axes}
            dims = [d for i, d in enumerate(declared.shape) if i not in dropped]
    shape = None if dims is None else tuple(d if isinstance(d, int) else 0 for d in dims)
    return (dtype if dtype is not None else _FLOAT32), shape


def _collector(xp: Any, value: ir.Value, declared: TypeInfo | None) -> Callable[[list], Any]:
    """How a Loop scan output turns its per-iteration values into the node's output.

    Tensors stack along a new first axis; sequences and optionals (or a node output declared
    as a sequence) become a list of the per-iteration values. A loop that ran zero times
    still yields a tensor of the body's dtype and rank.
    """
    if _is_sequence_like(value, declared):
        return list
    dtype, shape = _element_type(value, declared, (0,))
    empty_shape = (0,) + (shape or ())

    def collect(values: list) -> Any:
        if not values:
            return xp.zeros(empty_shape, dtype=dtype)
        return xp.stack(values)

    return collect


def _check_counts(ctx: NodeContext, graph: ir.Graph, inputs: int, min_outputs: int, what: str) -> int:
    """Check a body's input count and that it has at least ``min_outputs`` outputs; returns the
    number of outputs beyond them (the scan outputs), which the node may not exceed."""
    if len(graph.inputs) != inputs:
        raise ctx.error(f"{what} body has {len(graph.inputs)} inputs, expected {inputs}")
    extra = len(graph.outputs) - min_outputs
    if extra < 0:
        raise ctx.error(f"{what} body has {len(graph.outputs)} outputs, expected at least {min_outputs}")
    return extra


@op("If", 1)
def if_(ctx: NodeContext, xp: Any):
    """Run ``then_branch`` or ``else_branch`` on the boolean condition; their outputs are the node's."""
    then_graph = _graph_attr(ctx, "then_branch")
    else_graph = _graph_attr(ctx, "else_branch")
    for label, graph in (("then_branch", then_graph), ("else_branch", else_graph)):
        if len(graph.inputs):
            raise ctx.error(f"{label} must take no inputs, it has {len(graph.inputs)}")
        if len(graph.outputs) < ctx.num_outputs:
            raise ctx.error(f"{label} has {len(graph.outputs)} outputs, the node {ctx.num_outputs}")
    if len(then_graph.outputs) != len(else_graph.outputs):
        raise ctx.error(
            f"then_branch has {len(then_graph.outputs)} outputs, else_branch {len(else_graph.outputs)}"
        )
    then_body = ctx.subgraph("then_branch")
    else_body = ctx.subgraph("else_branch")
    no_inputs: tuple = ()

    def run(cond, *outer):
        body = then_body if bool(cond) else else_body
        return tuple(body(no_inputs, outer))

    return run


@op("Loop", 1)
def loop(ctx: NodeContext, xp: Any):
    """Run ``body`` while the trip count and condition allow; return the final loop-carried values,
    then each scan output stacked over the iterations.

    A missing trip count ``M`` means no limit; a missing ``cond`` means the body's condition
    output is ignored (a plain for loop). The body gets the iteration number (int64 scalar),
    the condition (bool scalar) and the carried values.
    """
    graph = _graph_attr(ctx, "body")
    explicit = ctx.num_inputs
    carried_count = max(0, explicit - 2)
    scan_count = _check_counts(ctx, graph, 2 + carried_count, 1 + carried_count, "Loop")
    if ctx.num_outputs > carried_count + scan_count:
        raise ctx.error(
            f"the node has {ctx.num_outputs} outputs but the body yields only "
            f"{carried_count} loop-carried values and {scan_count} scan outputs"
        )
    collectors = [
        _collector(xp, graph.outputs[1 + carried_count + k], _output_type(ctx, carried_count + k))
        for k in range(scan_count)
    ]
    body = ctx.subgraph("body")
    has_limit = explicit > 0 and ctx.inputs[0] is not None
    has_cond = explicit > 1 and ctx.inputs[1] is not None
    carried_end = 2 + carried_count
    scan_start = 1 + carried_count
    initial_cond = xp.asarray(True)

    def run(*args):
        outer = args[explicit:]
        limit = int(args[0].item()) if has_limit else None
        cond = args[1] if has_cond else initial_cond
        carried = list(args[2:carried_end])
        scans: list[list] = [[] for _ in range(scan_count)]
        going = bool(cond)
        i = 0
        control = run_control.active()
        while going and (limit is None or i < limit):
            if control is not None:
                control.check()
            outs = body([xp.asarray(i, dtype=np.int64), cond, *carried], outer)
            cond = outs[0]
            if has_cond:
                going = bool(cond)
            carried = outs[1:scan_start]
            for values, value in zip(scans, outs[scan_start:]):
                values.append(value)
            i += 1
        return (*carried, *(collect(values) for collect, values in zip(collectors, scans)))

    return run


def _output_type(ctx: NodeContext, index: int) -> TypeInfo | None:
    """The declared type of node output ``index``, None when absent or beyond the node's outputs."""
    return ctx.outputs[index] if index < ctx.num_outputs else None


def _normalize_axis(axis: int, rank: int, what: str) -> int:
    """``axis`` made non-negative for ``rank``; ValueError when out of range."""
    if not -rank <= axis < rank:
        raise ValueError(f"{what} {axis} is out of range for rank {rank}")
    return axis % rank


def _directions(ctx: NodeContext, name: str, count: int) -> list[bool]:
    """A directions attribute as ``reverse`` flags, one per input or output (default forward)."""
    values = ctx.attr(name, None)
    if values is None:
        return [False] * count
    if len(values) != count or any(v not in (0, 1) for v in values):
        raise ctx.error(f"'{name}' must hold {count} values of 0 or 1, got {values}")
    return [v == 1 for v in values]


@op("Scan", 9)
def scan(ctx: NodeContext, xp: Any):
    """Iterate ``body`` over slices of the scan inputs along ``scan_input_axes`` (either direction),
    carrying state; scan outputs are stacked along ``scan_output_axes`` (appended or prepended)."""
    graph = _graph_attr(ctx, "body")
    scan_inputs = ctx.attr("num_scan_inputs")
    explicit = ctx.num_inputs
    state_count = explicit - scan_inputs
    if scan_inputs < 1 or state_count < 0:
        raise ctx.error(f"num_scan_inputs={scan_inputs} does not fit the node's {explicit} inputs")
    scan_outputs = _check_counts(ctx, graph, explicit, state_count, "Scan")
    if ctx.num_outputs > state_count + scan_outputs:
        raise ctx.error(f"the node has {ctx.num_outputs} outputs, the body {len(graph.outputs)}")
    input_axes = ctx.attr("scan_input_axes", [0] * scan_inputs)
    output_axes = ctx.attr("scan_output_axes", [0] * scan_outputs)
    if len(input_axes) != scan_inputs:
        raise ctx.error(f"scan_input_axes has {len(input_axes)} values for {scan_inputs} scan inputs")
    if len(output_axes) != scan_outputs:
        raise ctx.error(f"scan_output_axes has {len(output_axes)} values for {scan_outputs} scan outputs")
    input_reverse = _directions(ctx, "scan_input_directions", scan_inputs)
    output_reverse = _directions(ctx, "scan_output_directions", scan_outputs)
    empties = [
        _element_type(graph.outputs[state_count + k], _output_type(ctx, state_count + k), (axis,))
        for k, axis in enumerate(output_axes)
    ]
    body = ctx.subgraph("body")

    def run(*args):
        outer = args[explicit:]
        states = list(args[:state_count])
        slices = []
        for x, axis, reverse in zip(args[state_count:explicit], input_axes, input_reverse):
            view = xp.moveaxis(x, _normalize_axis(axis, x.ndim, "scan_input_axes value"), 0)
            slices.append(view[::-1] if reverse else view)
        length = slices[0].shape[0]
        if any(s.shape[0] != length for s in slices):
            lengths = [s.shape[0] for s in slices]
            raise ValueError(f"scan inputs differ in length along their scan axes: {lengths}")
        collected: list[list] = [[] for _ in range(scan_outputs)]
        control = run_control.active()
        for t in range(length):
            if control is not None:
                control.check()
            outs = body(states + [s[t] for s in slices], outer)
            states = outs[:state_count]
            for values, value in zip(collected, outs[state_count:]):
                values.append(value)
        results = []
        for values, axis, reverse, (dtype, shape) in zip(collected, output_axes, output_reverse, empties):
            if values:
                stacked = xp.stack(values[::-1] if reverse else values)
            else:
                stacked = xp.zeros((0,) + (shape or ()), dtype=dtype)
            target = _normalize_axis(axis, stacked.ndim, "scan_output_axes value")
            results.append(xp.moveaxis(stacked, 0, target) if target else stacked)
        return (*states, *results)

    return run


@op("Scan", 8)
def scan_8(ctx: NodeContext, xp: Any):
    """Scan with a batch axis (opset 8): every batch entry runs its own scan over axis 1, for
    ``sequence_lens[b]`` steps (default: all); scan outputs are zero-padded to the full length."""
    graph = _graph_attr(ctx, "body")
    scan_inputs = ctx.attr("num_scan_inputs")
    explicit = ctx.num_inputs
    state_count = explicit - 1 - scan_inputs
    if scan_inputs < 1 or state_count < 0:
        raise ctx.error(f"num_scan_inputs={scan_inputs} does not fit the node's {explicit} inputs")
    scan_outputs = _check_counts(ctx, graph, state_count + scan_inputs, state_count, "Scan")
    if ctx.num_outputs > state_count + scan_outputs:
        raise ctx.error(f"the node has {ctx.num_outputs} outputs, the body {len(graph.outputs)}")
    reverse = _directions(ctx, "directions", scan_inputs)
    elements = [
        _element_type(graph.outputs[state_count + k], _output_type(ctx, state_count + k), (0, 1))
        for k in range(scan_outputs)
    ]
    body = ctx.subgraph("body")
    scan_start = 1 + state_count

    def run(*args):
        outer = args[explicit:]
        lens, states, inputs = args[0], args[1:scan_start], args[scan_start:explicit]
        batch, max_len = inputs[0].shape[0], inputs[0].shape[1]
        if any(x.ndim < 2 or x.shape[:2] != (batch, max_len) for x in inputs):
            raise ValueError("scan inputs must share their batch size and sequence length (axes 0 and 1)")
        if any(s.shape[:1] != (batch,) for s in states):
            raise ValueError(f"initial states must have the batch size {batch} on axis 0")
        steps = [max_len] * batch if lens is None else [int(n) for n in lens.reshape(-1)]
        if len(steps) != batch or any(not 0 <= n <= max_len for n in steps):
            raise ValueError(f"sequence_lens {steps} does not fit batch {batch} and length {max_len}")
        finals: list[list] = [[] for _ in range(state_count)]
        outputs: list[Any] = [None] * scan_outputs
        control = run_control.active()
        for b in range(batch):
            count = steps[b]
            sequences = [x[b, :count][::-1] if rev else x[b] for x, rev in zip(inputs, reverse)]
            st = [s[b] for s in states]
            for t in range(count):
                if control is not None:
                    control.check()
                outs = body(st + [s[t] for s in sequences], outer)
                st = outs[:state_count]
                for k, value in enumerate(outs[state_count:]):
                    if outputs[k] is None:
                        outputs[k] = xp.zeros((batch, max_len) + value.shape, dtype=value.dtype)
                    outputs[k][b, t] = value
            for held, value in zip(finals, st):
                held.append(value)
        results = [xp.stack(held) if held else state for held, state in zip(finals, states)]
        for k, (dtype, shape) in enumerate(elements):
            if outputs[k] is None:
                outputs[k] = xp.zeros((batch, max_len) + (shape or ()), dtype=dtype)
        return (*results, *outputs)

    return run

