"""Element-wise kernels with numpy broadcasting: unary math, activations, binary arithmetic,
comparisons, logic, Where, Clip, Cast and the variadic Sum/Mean/Max/Min.

Each operator is a C expression over its inputs ``x``, ``y``, ``z`` (loaded in the compute
type ``CT``: float for float16/float32, double for float64) and up to two float parameters
``p0``, ``p1`` taken from attributes. Programs are generated per operator and dtype and built
once: the ``flat`` kernel, for inputs that all have the output's shape, and one ``strided``
kernel per rank, which maps each output index to input offsets through a geometry struct
(dims and per-input strides, 0 along broadcast dims). Neighbouring dims are collapsed first,
so a bias added to a matrix is rank 2 whatever the tensors' ranks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.opencl.common import (
    BOOL,
    C_TYPES,
    FLOAT16,
    FLOAT64,
    FLOATS,
    LOCAL_SIZE,
    all_of,
    broadcast_shape,
    broadcast_strides,
    collapse,
    floats,
    global_size,
    op,
    pack,
    require,
    same_types,
    source,
)

_NAMES = "xyz"

#: Helpers available to float expressions. ``C(v)`` writes a literal in the compute type
#: (v must contain a decimal point).
_FLOAT_LIBRARY = """
inline CT sat01(CT v) { return v < C(0.0) ? C(0.0) : (v > C(1.0) ? C(1.0) : v); }
inline CT sigm(CT v) {
    const CT e = exp(-fabs(v));
    return v >= C(0.0) ? C(1.0) / (C(1.0) + e) : e / (C(1.0) + e);
}
inline CT splus(CT v) { return (v > C(0.0) ? v : C(0.0)) + log1p(exp(-fabs(v))); }
inline CT clip3(CT v, CT lo, CT hi) { v = v < lo ? lo : v; return v > hi ? hi : v; }
"""


def _program(expr: str, in_dtypes: Sequence[np.dtype], out_dtype: np.dtype, rank: int | None) -> str:
    """The OpenCL source of one element-wise operator for these dtypes.

    Without a rank it holds the ``flat`` kernel; with one, the ``strided`` kernel for that
    many (collapsed) dims, whose index arithmetic unrolls into straight-line code. The
    strided kernel runs on a 2-D range: the innermost dim along the first axis of the range
    (no division needed), the other dims together along the second.
    """
    arity = len(in_dtypes)
    operands = {f"I{i}": d for i, d in enumerate(in_dtypes)}
    operands["O"] = out_dtype
    compute_double = FLOAT64 in in_dtypes
    head = "#define CT I0_CT\n"
    if in_dtypes[0] in FLOATS:
        head += "#define C(v) (v)\n" if compute_double else "#define C(v) (v##f)\n"
        head += _FLOAT_LIBRARY
    args = "".join(f", __global const I{i}_T* in{i}" for i in range(arity))
    scalars = "const int n, const float p0, const float p1"
    store = f"    O_STORE(out, i, {expr});\n"
    if rank is None:
        loads = "".join(f"    const I{i}_CT {_NAMES[i]} = I{i}_LOAD(in{i}, i);\n" for i in range(arity))
        return source(operands, head + f"""
__kernel void flat(__global O_T* out{args}, {scalars}) {{
    const int i = get_global_id(0);
    if (i >= n) return;
{loads}{store}}}
""")
    offsets = ", ".join(f"o{i} = inner * g.strides[{i}][RANK - 1]" for i in range(arity))
    steps = " ".join(f"o{i} += c * g.strides[{i}][d];" for i in range(arity))
    firsts = " ".join(f"o{i} += rest * g.strides[{i}][0];" for i in range(arity))
    loads = "".join(f"    const I{i}_CT {_NAMES[i]} = I{i}_LOAD(in{i}, o{i});\n" for i in range(arity))
    return source(operands, head + f"""
#define RANK {rank}
typedef struct {{ int dims[RANK]; int strides[{arity}][RANK]; }} geometry;

__kernel void strided(__global O_T* out{args}, const geometry g, {scalars}) {{
    const int inner = get_global_id(0);
    if (inner >= g.dims[RANK - 1]) return;
    int rest = get_global_id(1);
    const int i = rest * g.dims[RANK - 1] + inner;
    int {offsets};
#if RANK > 1
    #pragma unroll
    for (int d = RANK - 2; d > 0; --d) {{
        const int c = rest % g.dims[d];
        rest /= g.dims[d];
        {steps}
    }}
    {firsts}
#endif
{loads}{store}}}
""")


@dataclass
class Elementwise:
    """The kernels of one operator and dtype combination, and how to launch them.

    The ``flat`` kernel is built at once; a ``strided`` one the first time inputs collapse
    to its rank.
    """

    xp: Any
    expr: str
    in_dtypes: tuple[np.dtype, ...]
    out_dtype: np.dtype

    def __post_init__(self) -> None:
        self._flat = self.xp.kernel(_program(self.expr, self.in_dtypes, self.out_dtype, None), "flat")

    def __call__(self, *inputs: Any, p0: float = 0.0, p1: float = 0.0) -> Any:
        """The output for these inputs, broadcast against each other."""
        shapes = [t.shape for t in inputs]
        out_shape = broadcast_shape(*shapes)
        out = self.xp.empty(out_shape, self.out_dtype)
        count = out.size
        if count == 0:
            return out
        if all(s == out_shape for s in shapes):
            self._flat(global_size(count), (LOCAL_SIZE,), out, *inputs, count, p0, p1)
            return out
        dims, strides = collapse(out_shape, [broadcast_strides(s, out_shape) for s in shapes])
        kernel = self.xp.kernel(_program(self.expr, self.in_dtypes, self.out_dtype, len(dims)), "strided")
        grid = (global_size(dims[-1])[0], count // dims[-1])
        kernel(grid, (LOCAL_SIZE, 1), out, *inputs, pack(dims, *strides, width=len(dims)), count, p0, p1)
        return out


def _input_dtypes(ctx: NodeContext) -> tuple[np.dtype, ...]:
    return tuple(np.dtype(t.dtype) for t in ctx.inputs if t is not None)


# -- unary ----------------------------------------------------------------------------------

#: op -> (since-versions, expression, parameters from the node's attributes).
Params = Callable[[NodeContext], "tuple[float, ...]"]
_UNARY: dict[str, tuple[tuple[int, ...], str, Params | None]] = {
    "Abs": ((1,), "fabs(x)", None),
    "Neg": ((1,), "-x", None),
    "Sign": ((9,), "x > C(0.0) ? C(1.0) : (x < C(0.0) ? C(-1.0) : x)", None),
    "Reciprocal": ((1,), "C(1.0) / x", None),
    "Sqrt": ((1,), "sqrt(x)", None),
    "Exp": ((1,), "exp(x)", None),
    "Log": ((1,), "log(x)", None),
    "Ceil": ((1,), "ceil(x)", None),
    "Floor": ((1,), "floor(x)", None),
    "Round": ((11,), "rint(x)", None),
    "Erf": ((9,), "erf(x)", None),
    "Sin": ((7,), "sin(x)", None),
    "Cos": ((7,), "cos(x)", None),
    "Tan": ((7,), "tan(x)", None),
    "Asin": ((7,), "asin(x)", None),
    "Acos": ((7,), "acos(x)", None),
    "Atan": ((7,), "atan(x)", None),
    "Sinh": ((9,), "sinh(x)", None),
    "Cosh": ((9,), "cosh(x)", None),
    "Asinh": ((9,), "asinh(x)", None),
    "Acosh": ((9,), "acosh(x)", None),
    "Atanh": ((9,), "atanh(x)", None),
    "Relu": ((1,), "x < C(0.0) ? C(0.0) : x", None),
    "LeakyRelu": ((1,), "x >= C(0.0) ? x : (CT)p0 * x", lambda c: (c.attr("alpha", 0.01),)),
    "Elu": ((1,), "x >= C(0.0) ? x : (CT)p0 * expm1(x)", lambda c: (c.attr("alpha", 1.0),)),
    "Selu": (
        (1,),
        "(CT)p1 * (x > C(0.0) ? x : (CT)p0 * expm1(x))",
        lambda c: (c.attr("alpha", 1.67326319217681884765625), c.attr("gamma", 1.05070102214813232421875)),
    ),
    "Celu": ((12,), "x > C(0.0) ? x : (CT)p0 * expm1(x / (CT)p0)", lambda c: (c.attr("alpha", 1.0),)),
    "Sigmoid": ((1,), "sigm(x)", None),
    "HardSigmoid": ((1,), "sat01((CT)p0 * x + (CT)p1)", lambda c: (c.attr("alpha", 0.2), c.attr("beta", 0.5))),
    "HardSwish": ((14,), "x * sat01(x / C(6.0) + C(0.5))", None),
    "Swish": ((24,), "x * sigm((CT)p0 * x)", lambda c: (c.attr("alpha", 1.0),)),
    "Softplus": ((1,), "splus(x)", None),
    "Softsign": ((1,), "x / (C(1.0) + fabs(x))", None),
    "Mish": ((18,), "x * tanh(splus(x))", None),
    "Tanh": ((1,), "tanh(x)", None),
    "ThresholdedRelu": ((10,), "x > (CT)p0 ? x : C(0.0)", lambda c: (c.attr("alpha", 1.0),)),
    "Shrink": (
        (9,),
        "x < -(CT)p0 ? x + (CT)p1 : (x > (CT)p0 ? x - (CT)p1 : C(0.0))",
        lambda c: (c.attr("lambd", 0.5), c.attr("bias", 0.0)),
    ),
}

_GELU = {
    "none": "C(0.5) * x * (C(1.0) + erf(x * C(0.70710678118654752440)))",
    "tanh": "C(0.5) * x * (C(1.0) + tanh(C(0.79788456080286535588) * (x + C(0.044715) * x * x * x)))",
}


def _unary_factory(expr: str, params: Params | None) -> Callable[[NodeContext, Any], Callable[[Any], Any]]:
    def factory(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
        dtype = _input_dtypes(ctx)[0]
        kernel = Elementwise(xp, expr, (dtype,), dtype)
        p0, p1 = (tuple(float(v) for v in params(ctx)) + (0.0, 0.0))[:2] if params else (0.0, 0.0)
        return lambda x: kernel(x, p0=p0, p1=p1)

    return factory


for _name, (_versions, _expr, _params) in _UNARY.items():
    _factory = _unary_factory(_expr, _params)
    _factory.__name__ = _name.lower()
    _factory.__doc__ = f"{_name} as an OpenCL element-wise kernel."
    op(_name, *_versions, supports=floats)(_factory)


def _gelu_approximation(ctx: NodeContext) -> str | None:
    if ctx.attr("approximate", "none") not in _GELU:
        return f"unknown approximate '{ctx.attr('approximate')}'"
    return floats(ctx)


@op("Gelu", 20, supports=_gelu_approximation)
@op("Gelu", 1, domain="com.onnxmux", supports=_gelu_approximation)
def gelu(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """x·Φ(x), exactly with erf or by the tanh approximation."""
    dtype = _input_dtypes(ctx)[0]
    kernel = Elementwise(xp, _GELU[ctx.attr("approximate", "none")], (dtype,), dtype)
    return lambda x: kernel(x)


@op("IsNaN", 9, supports=floats)
def is_nan(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Whether each element is NaN."""
    kernel = Elementwise(xp, "isnan(x)", _input_dtypes(ctx), BOOL)
    return lambda x: kernel(x)


@op("IsInf", 10, supports=floats)
def is_inf(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Whether each element is an infinity of a detected sign."""
    kernel = Elementwise(xp, "isinf(x) && ((x > C(0.0) && p0 != 0.0f) || (x < C(0.0) && p1 != 0.0f))", _input_dtypes(ctx), BOOL)
    positive = float(ctx.attr("detect_positive", 1))
    negative = float(ctx.attr("detect_negative", 1))
    return lambda x: kernel(x, p0=positive, p1=negative)


@op("Not", 1, supports=lambda ctx: require(ctx, frozenset({BOOL})))
def not_(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Logical negation."""
    kernel = Elementwise(xp, "!x", (BOOL,), BOOL)
    return lambda x: kernel(x)


# -- binary ---------------------------------------------------------------------------------

_ARITHMETIC: dict[str, tuple[tuple[int, ...], str]] = {
    "Add": ((7,), "x + y"),
    "Sub": ((7,), "x - y"),
    "Mul": ((7,), "x * y"),
    "Div": ((7,), "x / y"),
    "Pow": ((7,), "pow(x, y)"),
    "PRelu": ((7,), "x < C(0.0) ? y * x : x"),
}
_COMPARISONS: dict[str, tuple[tuple[int, ...], str]] = {
    "Equal": ((7,), "x == y"),
    "Less": ((7,), "x < y"),
    "Greater": ((7,), "x > y"),
    "LessOrEqual": ((12,), "x <= y"),
    "GreaterOrEqual": ((12,), "x >= y"),
}
_LOGIC: dict[str, tuple[tuple[int, ...], str]] = {
    "And": ((7,), "x && y"),
    "Or": ((7,), "x || y"),
    "Xor": ((7,), "(x != 0) != (y != 0)"),
}
#: Max and Min propagate NaN, as numpy's maximum and minimum do.
_MAX = "(x > y || isnan(x)) ? x : y"
_MIN = "(x < y || isnan(x)) ? x : y"


def _binary_factory(expr: str, result: np.dtype | None) -> Callable[[NodeContext, Any], Callable[[Any, Any], Any]]:
    def factory(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
        dtypes = _input_dtypes(ctx)
        kernel = Elementwise(xp, expr, dtypes, dtypes[0] if result is None else result)
        return lambda x, y: kernel(x, y)

    return factory


def _register_binary(table: dict[str, tuple[tuple[int, ...], str]], result: np.dtype | None, check: Callable) -> None:
    for name, (versions, expr) in table.items():
        factory = _binary_factory(expr, result)
        factory.__name__ = name.lower()
        factory.__doc__ = f"{name} as an OpenCL element-wise kernel with numpy broadcasting."
        op(name, *versions, supports=check)(factory)


_register_binary(_ARITHMETIC, None, all_of(floats, same_types()))
_register_binary(_COMPARISONS, BOOL, all_of(floats, same_types()))
_register_binary(_LOGIC, BOOL, lambda ctx: require(ctx, frozenset({BOOL})))


def _float_modulo(ctx: NodeContext) -> str | None:
    if not ctx.attr("fmod", 0):
        return "integer-style Mod (fmod=0) stays on the CPU"
    return all_of(floats, same_types())(ctx)


@op("Mod", 10, supports=_float_modulo)
def mod(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """C's fmod: the remainder with the sign of the dividend."""
    dtypes = _input_dtypes(ctx)
    kernel = Elementwise(xp, "fmod(x, y)", dtypes, dtypes[0])
    return lambda x, y: kernel(x, y)


# -- variadic -------------------------------------------------------------------------------


def _variadic(expr: str, mean: bool = False) -> Callable[[NodeContext, Any], Callable[..., Any]]:
    def factory(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
        dtype = _input_dtypes(ctx)[0]
        pair = Elementwise(xp, expr, (dtype, dtype), dtype)
        divide = Elementwise(xp, "x / (CT)p0", (dtype,), dtype)

        def run(*inputs: Any) -> Any:
            result = functools.reduce(pair, inputs)
            return divide(result, p0=float(len(inputs))) if mean else result

        return run

    return factory


_VARIADIC = {"Sum": ("x + y", False), "Mean": ("x + y", True), "Max": (_MAX, False), "Min": (_MIN, False)}
for _name, (_expr, _mean) in _VARIADIC.items():
    _factory = _variadic(_expr, _mean)
    _factory.__name__ = _name.lower()
    _factory.__doc__ = f"{_name} of any number of broadcast inputs, folded pairwise on the device."
    op(_name, 6, supports=all_of(floats, same_types()))(_factory)


# -- ternary --------------------------------------------------------------------------------


def _where_types(ctx: NodeContext) -> str | None:
    dtypes = _input_dtypes(ctx)
    if dtypes[0] != BOOL:
        return "the condition is not bool"
    if dtypes[1] != dtypes[2] or dtypes[1] not in C_TYPES or dtypes[1] == np.dtype(np.int64):
        return f"Where on {dtypes[1]} stays on the CPU (int64 values are shape arithmetic)"
    return None


@op("Where", 9, supports=_where_types)
def where(ctx: NodeContext, xp: Any) -> Callable[[Any, Any, Any], Any]:
    """``x`` where the condition holds, else ``y``; elements are moved as raw bits."""
    dtype = _input_dtypes(ctx)[1]
    bits = np.dtype(f"u{dtype.itemsize}")
    kernel = Elementwise(xp, "x ? y : z", (BOOL, bits, bits), bits)

    def run(condition: Any, x: Any, y: Any) -> Any:
        return kernel(condition, x.view(bits), y.view(bits)).view(dtype)

    return run


@op("Clip", 1, supports=floats)
def clip_attributes(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """x limited to the ``min``/``max`` attributes."""
    dtype = _input_dtypes(ctx)[0]
    kernel = Elementwise(xp, "clip3(x, y, z)", (dtype, dtype, dtype), dtype)
    low = xp.upload(np.array(ctx.attr("min", -np.inf), dtype=dtype))
    high = xp.upload(np.array(ctx.attr("max", np.inf), dtype=dtype))
    return lambda x: kernel(x, low, high)


@op("Clip", 11, supports=all_of(floats, same_types()))
def clip(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """x limited to the optional ``min``/``max`` inputs (device scalars)."""
    dtype = _input_dtypes(ctx)[0]
    kernel = Elementwise(xp, "clip3(x, y, z)", (dtype, dtype, dtype), dtype)
    lowest = xp.upload(np.array(-np.inf, dtype=dtype))
    highest = xp.upload(np.array(np.inf, dtype=dtype))

    def run(x: Any, low: Any = None, high: Any = None) -> Any:
        return kernel(x, lowest if low is None else low, highest if high is None else high)

    return run


# -- casts ----------------------------------------------------------------------------------

#: Types Cast converts between on the device (at least one side must be floating).
_CASTABLE = frozenset(C_TYPES)


def _cast_expr(source_dtype: np.dtype, target: np.dtype) -> str:
    """The conversion of ``x`` (in the source compute type) for ``O_STORE``."""
    if target == BOOL:
        return "x != 0"
    if target == FLOAT16:
        # vstore_half rounds float and double once; integers go through float, exact below 2**24.
        return "x" if source_dtype in FLOATS else "(float)x"
    return "(O_CT)x"


def _cast_types(source_dtype: np.dtype | None, target: np.dtype | None) -> str | None:
    if source_dtype not in _CASTABLE or target not in _CASTABLE:
        return f"Cast from {source_dtype} to {target} is not an OpenCL kernel"
    if source_dtype not in FLOATS and target not in FLOATS:
        return "casts between integer types stay on the CPU (shape arithmetic)"
    return None


def _cast_supported(ctx: NodeContext) -> str | None:
    source_dtype = _input_dtypes(ctx)[0]
    target = None if ctx.outputs[0] is None or ctx.outputs[0].dtype is None else np.dtype(ctx.outputs[0].dtype)
    return _cast_types(source_dtype, target)


def _cast_kernel(xp: Any, source_dtype: np.dtype, target: np.dtype) -> Callable[[Any], Any]:
    if source_dtype == target:
        return lambda x: x
    kernel = Elementwise(xp, _cast_expr(source_dtype, target), (source_dtype,), target)
    return lambda x: kernel(x)


@op("Cast", 6, supports=_cast_supported)
def cast(ctx: NodeContext, xp: Any) -> Callable[[Any], Any]:
    """Conversion to the ``to`` type: C conversions (truncation toward zero for integers,
    round to nearest even for narrower floats, nonzero for bool)."""
    return _cast_kernel(xp, _input_dtypes(ctx)[0], np.dtype(ctx.outputs[0].dtype))


@op("CastLike", 15, supports=lambda ctx: _cast_types(*_input_dtypes(ctx)[:2]))
def cast_like(ctx: NodeContext, xp: Any) -> Callable[[Any, Any], Any]:
    """Conversion to the type of the second input."""
    source_dtype, target = _input_dtypes(ctx)[:2]
    convert = _cast_kernel(xp, source_dtype, target)
    return lambda x, like: convert(x)

