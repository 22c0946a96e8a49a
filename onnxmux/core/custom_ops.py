"""Custom operators written in Python: an op of the user's own domain, run by a numpy kernel.

A ``CustomOp`` declares its inputs, outputs, attributes and type constraints, an optional
shape function and, besides the numpy kernel the CPU provider runs, optional kernels for
other providers. Ops are registered globally (``register_custom_op``, the ``custom_op``
decorator) or for the sessions of one ``SessionOptions`` (``register_custom_ops``); a
session's own ops take precedence over global ones of the same name and version.

In a session the ops are kernels like any other: they enter the providers' registries (so
partitioning and copies treat them as other nodes), their shape functions type their outputs
at load time (ONNX shape inference knows nothing of the domain), and constant folding
evaluates them only when they are declared ``pure``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxmux.core.context import NodeContext
from onnxmux.core.custom_op_typing import Shape, format_shape, infer_custom_shapes
from onnxmux.core.errors import InvalidArgument, RuntimeFailure
from onnxmux.core.optimizer.editing import ONNXMUX_DOMAIN
from onnxmux.core.provider import ExecutionProvider, KernelProvider
from onnxmux.core.registry import KernelDef, KernelRegistry
from onnxmux.core.types import dtype_name

#: Domains a custom op may not use: ONNX's own, and the one of onnxmux's fused kernels.
RESERVED_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training", ONNXMUX_DOMAIN}
)


def _element_types() -> dict[str, np.dtype]:
    types = {}
    for data_type in ir.DataType:
        try:
            dtype = data_type.numpy()
        except (TypeError, ValueError, NotImplementedError):
            continue
        types.setdefault(dtype_name(dtype), dtype)
    return types


#: ONNX element-type names (``float``, ``int64``, ``string``...) and their numpy dtypes.
ELEMENT_TYPES = _element_types()


def parse_type(spec: Any) -> np.dtype:
    """``"tensor(float)"``, ``"float"`` or a numpy dtype as a numpy dtype; InvalidArgument otherwise."""
    if isinstance(spec, str):
        name = spec.strip()
        if name.startswith("tensor(") and name.endswith(")"):
            name = name[7:-1]
        if name in ELEMENT_TYPES:
            return ELEMENT_TYPES[name]
        raise InvalidArgument(f"unknown tensor type '{spec}' (use ONNX's names: tensor(float), int64, string...)")
    try:
        return np.dtype(spec)
    except TypeError as exc:
        raise InvalidArgument(f"unknown tensor type {spec!r}") from exc


@dataclass(frozen=True)
class Port:
    """A declared input or output: ``"X: T"`` (a type constraint), ``"X: tensor(float)"``, ``"X"`` (any
    tensor); a ``?`` after the name marks an optional input."""

    name: str
    type: str = ""
    optional: bool = False

    @classmethod
    def parse(cls, spec: str) -> Port:
        """The port of a spec string."""
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidArgument(f"an input or output must be given as 'NAME' or 'NAME: TYPE', got {spec!r}")
        name, _, type_ = spec.partition(":")
        name = name.strip()
        return cls(name.rstrip("?").strip(), type_.strip(), name.endswith("?"))


class CustomOp:
    """An operator of the user's domain run by Python kernels; see docs/custom_ops.md.

    ``kernel(*inputs, **attributes)`` computes with numpy on the CPU and returns one array, or a
    tuple for several outputs. ``kernels`` maps other providers' names (or aliases) to kernels
    called as ``kernel(*inputs, xp=..., **attributes)`` with that provider's device values and
    its ``xp`` (its array module or device runtime). ``shape(*input shapes, **attributes)``
    returns the output shape (a list of them for several outputs).
    """

    def __init__(
        self,
        domain: str,
        op_type: str,
        kernel: Callable[..., Any],
        *,
        inputs: Sequence[str],
        outputs: Sequence[str],
        attributes: Mapping[str, Any] | None = None,
        type_constraints: Mapping[str, Sequence[Any]] | None = None,
        shape: Callable[..., Any] | None = None,
        kernels: Mapping[str, Callable[..., Any]] | None = None,
        pure: bool = False,
        since_version: int = 1,
    ) -> None:
        if not isinstance(domain, str) or domain in RESERVED_DOMAINS:
            raise InvalidArgument(
                f"custom op '{op_type}': domain {domain!r} is reserved; use a domain of your own (com.example)"
            )
        if not isinstance(op_type, str) or not op_type.isidentifier():
            raise InvalidArgument(f"custom op in {domain}: op type {op_type!r} is not a valid name")
        self.domain, self.op_type, self.since_version = domain, op_type, int(since_version)
        self.label = f"{domain}::{op_type}"
        for what, fn in [
            ("kernel", kernel),
            ("shape", shape),
            *((f"kernel for {k}", f) for k, f in (kernels or {}).items()),
        ]:
            if fn is not None and not callable(fn):
                raise InvalidArgument(f"custom op {self.label}: the {what} is not callable")
        self.kernel, self.shape, self.kernels, self.pure = kernel, shape, dict(kernels or {}), bool(pure)
        self.constraints = {
            name: frozenset(parse_type(t) for t in types) for name, types in (type_constraints or {}).items()
        }
        self.inputs = tuple(Port.parse(s) for s in inputs)
        self.outputs = tuple(Port.parse(s) for s in outputs)
        if not self.outputs:
            raise InvalidArgument(f"custom op {self.label} declares no output")
        self.fixed = {}
        for port in self.inputs + self.outputs:
            if port.type and port.type not in self.constraints:
                try:
                    self.fixed[port.type] = parse_type(port.type)
                except InvalidArgument as exc:
                    raise InvalidArgument(
                        f"custom op {self.label}: the type '{port.type}' of '{port.name}' is neither a type constraint "
                        f"(declared: {', '.join(self.constraints) or 'none'}) nor a tensor type: {exc}"
                    ) from exc
        seen_optional = False
        for port in self.inputs:
            if seen_optional and not port.optional:
                raise InvalidArgument(f"custom op {self.label}: required input '{port.name}' follows an optional one")
            seen_optional = seen_optional or port.optional
        self.attributes = dict(attributes or {})

    @property
    def key(self) -> tuple[str, str, int]:
        """(domain, op type, since-version): what a scope registers once."""
        return (self.domain, self.op_type, self.since_version)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the numpy kernel directly."""
        return self.kernel(*args, **kwargs)

    def __repr__(self) -> str:
        return f"CustomOp({self.label}, since_version={self.since_version})"

    # -- types --------------------------------------------------------------------------
    def _allowed(self, port: Port) -> frozenset | None:
        if port.type in self.constraints:
            return self.constraints[port.type]
        return frozenset({self.fixed[port.type]}) if port.type else None

    def bind(self, dtypes: Sequence[np.dtype | None]) -> tuple[dict[str, np.dtype], str | None]:
        """The type constraints bound by the inputs' dtypes, and why they do not fit (None when they do)."""
        bound: dict[str, np.dtype] = {}
        for port, dtype in zip(self.inputs, dtypes):
            if dtype is None:
                continue
            allowed = self._allowed(port)
            if allowed is not None and dtype not in allowed:
                names = ", ".join(sorted(f"tensor({dtype_name(t)})" for t in allowed))
                return bound, f"input '{port.name}' is tensor({dtype_name(dtype)}); {self.label} accepts {names}"
            if port.type in self.constraints and bound.setdefault(port.type, dtype) != dtype:
                return bound, (
                    f"inputs of type {port.type} differ: tensor({dtype_name(bound[port.type])}) "
                    f"and tensor({dtype_name(dtype)}) ('{port.name}')"
                )
        return bound, None

    def output_dtypes(self, bound: Mapping[str, np.dtype]) -> list[np.dtype | None]:
        """Each output's dtype: its fixed type, its bound constraint, or a constraint's only type."""
        result = []
        for port in self.outputs:
            allowed = self._allowed(port)
            if port.type in bound:
                result.append(bound[port.type])
            else:
                result.append(next(iter(allowed)) if allowed is not None and len(allowed) == 1 else None)
        return result

    def arity_error(self, inputs: int, outputs: int) -> str | None:
        """Why a node with this many inputs and outputs cannot be this op (None when it can)."""
        required = sum(1 for p in self.inputs if not p.optional)
        if required <= inputs <= len(self.inputs) and outputs <= len(self.outputs):
            return None
        return (
            f"{self.label} takes {required}..{len(self.inputs)} inputs and up to {len(self.outputs)} outputs; "
            f"the node has {inputs} and {outputs}"
        )

    # -- attributes ---------------------------------------------------------------------
    def attribute_values(self, given: Mapping[str, Any], error: Callable[[str], Exception]) -> dict[str, Any]:
        """The kernel's keyword arguments: the node's attributes checked and the defaults filled in."""
        unknown = sorted(set(given) - set(self.attributes))
        if unknown:
            raise error(
                f"attribute '{unknown[0]}' is not declared by {self.label} (declared: {', '.join(self.attributes) or 'none'})"
            )
        values = {}
        for name, spec in self.attributes.items():
            if name not in given:
                if isinstance(spec, type):
                    raise error(f"required attribute '{name}' ({spec.__name__}) is missing")
                values[name] = spec
                continue
            value, expected = given[name], spec if isinstance(spec, type) else type(spec)
            if spec is None or isinstance(value, expected):
                values[name] = value
            elif expected is float and isinstance(value, int):
                values[name] = float(value)
            elif expected in (list, tuple) and isinstance(value, (list, tuple)):
                values[name] = expected(value)
            else:
                raise error(f"attribute '{name}' must be {expected.__name__}, got {type(value).__name__} {value!r}")
        return values

    # -- kernels ------------------------------------------------------------------------
    def kernel_def(self, fn: Callable[..., Any], on_host: bool) -> KernelDef:
        """The registry entry running ``fn``: the numpy kernel's results are checked against the
        declared outputs; a provider's kernel is also passed the provider's ``xp``."""
        op = self

        def supports(ctx: NodeContext) -> str | None:
            return op.bind([t.dtype if t is not None and t.kind == "tensor" else None for t in ctx.inputs])[1]

        def factory(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
            wrong = op.arity_error(ctx.num_inputs, ctx.num_outputs)
            if wrong:
                raise ctx.error(wrong)
            attrs = op.attribute_values(ctx.attrs, ctx.error)
            if not on_host:
                attrs["xp"] = xp
            name = getattr(fn, "__qualname__", repr(fn))

            def run(*inputs: Any) -> Any:
                try:
                    result = fn(*inputs, **attrs)
                except Exception as exc:
                    raise RuntimeFailure(
                        f"{ctx.describe()}: custom op {op.label} kernel '{name}' raised {type(exc).__name__}: {exc}"
                    ) from exc
                return _checked(ctx, op, result) if on_host else result

            return run

        return KernelDef(self.op_type, self.domain, self.since_version, factory, supports)

    def kernel_for(self, provider: ExecutionProvider) -> Callable[..., Any] | None:
        """This op's kernel for a provider: the numpy one on the CPU, else one keyed by its name or alias."""
        for key in (provider.name, *provider.aliases):
            if key in self.kernels:
                return self.kernels[key]
        return self.kernel if provider.name == "CPUExecutionProvider" else None


def _checked(ctx: NodeContext, op: CustomOp, result: Any) -> Any:
    """A numpy kernel's result, checked against the node's outputs (count, dtype, rank, static dims)."""
    several = type(result) is tuple
    values = list(result) if several else [result]
    if len(values) != max(ctx.num_outputs, 1):
        raise RuntimeFailure(
            f"{ctx.describe()}: custom op {op.label} returned {len(values)} values for {ctx.num_outputs} outputs"
        )
    for i, (value, info) in enumerate(zip(values, ctx.outputs)):
        if info is None or value is None:
            continue
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        if info.dtype == object and array.dtype.kind in "US":
            array = array.astype(object)
        port = op.outputs[i].name
        if info.dtype is not None and array.dtype != info.dtype:
            raise RuntimeFailure(
                f"{ctx.describe()}: custom op {op.label} returned tensor({dtype_name(array.dtype)}) for output "
                f"'{port}', declared {info.onnx_name}"
            )
        if info.shape is not None and not _matches(info.shape, array.shape):
            raise RuntimeFailure(
                f"{ctx.describe()}: custom op {op.label} returned shape {list(array.shape)} for output '{port}', "
                f"expected {format_shape(info.shape)}"
            )
        values[i] = array
    return tuple(values) if several else values[0]


def _matches(declared: Shape, actual: Sequence[int]) -> bool:
    return len(declared) == len(actual) and all(not isinstance(d, int) or d == a for d, a in zip(declared, actual))


class CustomOpScope:
    """The custom ops of one scope (global, or one SessionOptions); each op once per version."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._ops: dict[tuple[str, str, int], CustomOp] = {}

    def add(self, ops: Iterable[Any]) -> None:
        """Register ops (lists are flattened); an op registered twice here raises InvalidArgument."""
        for op in ops:
            if isinstance(op, (list, tuple)):
                self.add(op)
                continue
            if not isinstance(op, CustomOp):
                raise InvalidArgument(f"expected an onnxmux.CustomOp, got {type(op).__name__}")
            if op.key in self._ops:
                raise InvalidArgument(
                    f"custom op {op.label} (since version {op.since_version}) is already registered {self.where}"
                )
            self._ops[op.key] = op

    def remove(self, op: CustomOp) -> None:
        """Unregister an op; InvalidArgument when it is not registered here."""
        if self._ops.get(op.key) is not op:
            raise InvalidArgument(
                f"custom op {op.label} (since version {op.since_version}) is not registered {self.where}"
            )
        del self._ops[op.key]

    def ops(self) -> list[CustomOp]:
        """The registered ops."""
        return list(self._ops.values())


GLOBAL_SCOPE = CustomOpScope("globally")


def register_custom_op(op: CustomOp) -> CustomOp:
    """Make a custom op available to every session created afterwards; returns it."""
    GLOBAL_SCOPE.add([op])
    return op


def unregister_custom_op(op: CustomOp) -> None:
    """Withdraw a globally registered op (sessions already created keep it)."""
    GLOBAL_SCOPE.remove(op)


def custom_op(domain: str, op_type: str | None = None, **spec: Any) -> Callable[[Callable[..., Any]], CustomOp]:
    """Decorator: define a custom op whose numpy kernel is the function, and register it globally.

    ``op_type`` defaults to the function's name; ``spec`` takes CustomOp's keyword arguments.
    """

    def decorate(kernel: Callable[..., Any]) -> CustomOp:
        return register_custom_op(CustomOp(domain, op_type or kernel.__name__, kernel, **spec))

    return decorate


@dataclass
class SessionCustomOps:
    """The custom ops one session sees: the global ones, overridden by its options' own."""

    ops: dict[tuple[str, str], list[CustomOp]] = field(default_factory=dict)

    @classmethod
    def collect(cls, session_scope: CustomOpScope | None) -> SessionCustomOps | None:
        """The ops of the global scope and ``session_scope``; None when there are none."""
        merged = {op.key: op for op in GLOBAL_SCOPE.ops()}
        merged.update((op.key, op) for op in (session_scope.ops() if session_scope else ()))
        if not merged:
            return None
        found = cls()
        for op in sorted(merged.values(), key=lambda o: o.since_version):
            found.ops.setdefault((op.domain, op.op_type), []).append(op)
        return found

    def lookup(self, domain: str, op_type: str, opset: int) -> CustomOp | None:
        """The op serving a node at this opset of its domain (largest since-version not above it)."""
        versions = [op for op in self.ops.get((domain, op_type), ()) if op.since_version <= opset]
        return versions[-1] if versions else None

    def install(self, providers: Sequence[ExecutionProvider], pure_only: bool = False) -> None:
        """Give each kernel provider that has kernels for these ops a registry holding them over its own."""
        for provider in providers:
            if not isinstance(provider, KernelProvider):
                continue
            extra = KernelRegistry()
            for versions in self.ops.values():
                for op in versions:
                    fn = op.kernel_for(provider)
                    if fn is not None and (op.pure or not pure_only):
                        extra.add(op.kernel_def(fn, on_host=fn is op.kernel))
            if extra.ops():
                provider.registry = _Layered(extra, provider.registry)

    def infer_shapes(
        self, proto: onnx.ModelProto, infer: Callable[[onnx.ModelProto], onnx.ModelProto]
    ) -> onnx.ModelProto:
        """ONNX shape inference (``infer``) that continues past these ops, typed by their declarations
        and shape functions (see ``custom_op_typing``)."""
        return infer_custom_shapes(proto, self.lookup, infer)


class _Layered(KernelRegistry):
    """A provider's registry with custom ops over it (an op found in ``top`` hides the base's)."""

    def __init__(self, top: KernelRegistry, base: KernelRegistry) -> None:
        super().__init__()
        self.top, self.base = top, base

    def _pick(self, domain: str, op_type: str) -> KernelRegistry:
        return self.top if self.top.versions(domain, op_type) else self.base

    def lookup(self, domain: str, op_type: str, opset: int) -> KernelDef | None:
        return self._pick(domain, op_type).lookup(domain, op_type, opset)

    def versions(self, domain: str, op_type: str) -> list[int]:
        return self._pick(domain, op_type).versions(domain, op_type)

    def ops(self) -> list[tuple[str, str]]:
        return sorted(set(self.top.ops()) | set(self.base.ops()))
