"""Feature encoders of ai.onnx.ml: value mappings, one-hot, dict/map conversions, feature
selection and concatenation.

OneHotEncoder, LabelEncoder, CategoryMapper, DictVectorizer, CastMap, FeatureVectorizer,
ArrayFeatureExtractor and ZipMap. Key look-ups are vectorized with a sorted key table and
searchsorted; string keys are compared as numpy unicode arrays.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.ml_linear import ML
from onnxmux.providers.cpu.registry import op


class _KeyTable:
    """A vectorized map from keys to values; unknown keys map to a default.

    ``last_wins`` picks which of repeated keys counts. Float keys that are NaN match NaN.
    """

    def __init__(self, keys: np.ndarray, values: np.ndarray, default: Any, last_wins: bool) -> None:
        keys = _comparable(np.asarray(keys))
        values = np.asarray(values)
        if last_wins:
            keys, values = keys[::-1], values[::-1]
        self.keys, first = np.unique(keys, return_index=True)
        self.values = values[first]
        self.default = default

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.keys.size == 0:
            return np.full(x.shape, self.default, dtype=self.values.dtype)
        probe = _comparable(x)
        slot = np.minimum(np.searchsorted(self.keys, probe), self.keys.size - 1)
        found = self.keys[slot] == probe
        if self.keys.dtype.kind == "f" and probe.dtype.kind == "f":
            found |= np.isnan(self.keys[slot]) & np.isnan(probe)
        return np.where(found, self.values[slot], np.asarray(self.default, dtype=self.values.dtype))


def _comparable(a: np.ndarray) -> np.ndarray:
    """Strings as a numpy unicode array (sortable, comparable in C); other arrays unchanged."""
    if a.dtype == object or a.dtype.kind == "U":
        return a.astype(str) if a.size else np.zeros(a.shape, dtype="<U1")
    return a


def _strings(values: Any) -> np.ndarray:
    return np.asarray(list(values), dtype=object)


def _one_of(ctx: NodeContext, *names: str) -> tuple[str, Any]:
    """The single attribute among ``names`` that is set, and its value."""
    present = [(name, ctx.attrs[name]) for name in names if name in ctx.attrs]
    if len(present) != 1:
        raise ctx.error(f"exactly one of {', '.join(names)} must be set")
    return present[0]


@op("OneHotEncoder", 1, domain=ML)
def one_hot_encoder(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """One float32 indicator vector over the categories per input element (extra last axis)."""
    name, cats = _one_of(ctx, "cats_int64s", "cats_strings")
    categories = np.asarray(cats, dtype=np.int64) if name == "cats_int64s" else _strings(cats)
    table = _KeyTable(categories, np.arange(categories.size), -1, last_wins=False)
    zeros = bool(ctx.attr("zeros", 1))
    width = categories.size

    def run(x):
        if name == "cats_int64s" and x.dtype != object:
            x = x.astype(np.int64)
        index = table(x)
        if not zeros and (index < 0).any():
            raise ValueError("an input value is not among the categories and zeros is 0")
        return (index[..., None] == xp.arange(width)).astype(np.float32)

    return run


@op("LabelEncoder", 1, domain=ML)
def label_encoder_v1(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Strings to their index in classes_strings, or int64 indices to those strings."""
    classes = _strings(ctx.attr("classes_strings", []))
    to_index = _KeyTable(classes, np.arange(classes.size, dtype=np.int64), ctx.attr("default_int64", -1), False)
    default_string = ctx.attr("default_string", "_Unused")
    lookup = np.append(classes, default_string).astype(object)

    def run(x):
        if x.dtype == object:
            return to_index(x)
        valid = (x >= 0) & (x < classes.size)
        return lookup[np.where(valid, x, classes.size)]

    return run


_LABEL_KEYS = ("keys_strings", "keys_int64s", "keys_floats", "keys_tensor")
_LABEL_VALUES = ("values_strings", "values_int64s", "values_floats", "values_tensor")
_DEFAULTS = {"values_strings": "default_string", "values_int64s": "default_int64", "values_floats": "default_float"}
_DEFAULT_OF_KIND = {"O": "_Unused", "U": "_Unused", "i": -1, "u": -1, "f": -0.0}


def _label_array(name: str, value: Any) -> np.ndarray:
    """A keys_*/values_* attribute as a numpy array of the type the op gives it."""
    if name.endswith("_strings"):
        return _strings(value)
    if name.endswith("_int64s"):
        return np.asarray(value, dtype=np.int64)
    if name.endswith("_floats"):
        return np.asarray(value, dtype=np.float32)
    return _tensor_values(value)


def _tensor_values(value: Any) -> np.ndarray:
    """A TENSOR attribute flattened."""
    return np.asarray(value).ravel()


@op("LabelEncoder", 2, 4, domain=ML)
def label_encoder(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Each element mapped through the keys_* -> values_* table, default_* when absent.

    A repeated key maps to its last value; NaN keys match NaN inputs.
    """
    key_name, keys = _one_of(ctx, *_LABEL_KEYS)
    value_name, values = _one_of(ctx, *_LABEL_VALUES)
    keys, values = _label_array(key_name, keys), _label_array(value_name, values)
    if keys.size != values.size:
        raise ctx.error("keys and values differ in length")
    if value_name == "values_tensor":
        given = ctx.attr("default_tensor", None)
        default = _tensor_values(given)[0] if given is not None else _DEFAULT_OF_KIND[values.dtype.kind]
    else:
        default = ctx.attr(_DEFAULTS[value_name], _DEFAULT_OF_KIND[values.dtype.kind])
    table = _KeyTable(keys, values, default, last_wins=True)

    def run(x):
        return table(x)

    return run


@op("CategoryMapper", 1, domain=ML)
def category_mapper(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Strings to int64 via cats_strings -> cats_int64s, or int64 back to strings."""
    ints = np.asarray(ctx.attr("cats_int64s", []), dtype=np.int64)
    strings = _strings(ctx.attr("cats_strings", []))
    if ints.size != strings.size:
        raise ctx.error("cats_int64s and cats_strings differ in length")
    to_int = _KeyTable(strings, ints, ctx.attr("default_int64", -1), last_wins=False)
    to_string = _KeyTable(ints, strings, ctx.attr("default_string", "_Unused"), last_wins=False)

    def run(x):
        return to_int(x) if x.dtype == object else to_string(x)

    return run


def _map_dtype(ctx: NodeContext) -> np.dtype | None:
    """The declared element type of the map input's values or of the output tensor, if known."""
    for info in (ctx.outputs[0] if ctx.outputs else None, ctx.inputs[0].elem if ctx.inputs[0] else None):
        if info is not None and info.dtype is not None:
            return np.dtype(info.dtype)
    return None


@op("DictVectorizer", 1, domain=ML)
def dict_vectorizer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """A [1, vocabulary] tensor holding each dict value at its key's vocabulary position."""
    name, vocabulary = _one_of(ctx, "int64_vocabulary", "string_vocabulary")
    position = {key: i for i, key in enumerate(vocabulary)}
    declared = _map_dtype(ctx)
    size = len(vocabulary)

    def run(x):
        slots = [position[key] for key in x if key in position]
        values = np.asarray([value for key, value in x.items() if key in position])
        dtype = declared or (values.dtype if values.size else np.float32)
        out = np.zeros((1, size), dtype=dtype)
        if dtype == object:
            out[...] = ""
        out[0, slots] = values
        return out

    return run


_CAST_TO = {"TO_FLOAT": np.float32, "TO_INT64": np.int64, "TO_STRING": object}


@op("CastMap", 1, domain=ML)
def cast_map(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """An int64-keyed map as a [1, n] tensor ordered by key (DENSE) or indexed by key (SPARSE)."""
    form = ctx.attr("map_form", "DENSE")
    cast_to = ctx.attr("cast_to", "TO_FLOAT")
    max_map = ctx.attr("max_map", 1)
    if form not in ("DENSE", "SPARSE") or cast_to not in _CAST_TO:
        raise ctx.error(f"unsupported map_form '{form}' or cast_to '{cast_to}'")
    if form == "SPARSE" and max_map < 1:
        raise ctx.error("max_map must be positive for SPARSE")

    def convert(values: np.ndarray) -> np.ndarray:
        if cast_to == "TO_STRING":
            if values.dtype == object:
                return values
            return np.asarray([f"{v:f}" for v in values.tolist()], dtype=object)
        if values.dtype == object:
            values = values.astype(np.float64)
        return values.astype(_CAST_TO[cast_to])

    def run(x):
        keys = np.asarray(sorted(x), dtype=np.int64)
        values = convert(np.asarray([x[k] for k in keys.tolist()]))
        if form == "DENSE":
            return values.reshape(1, -1)
        if keys.size and (keys.min() < 0 or keys.max() >= max_map):
            raise ValueError(f"a key is outside [0, {max_map}) for SPARSE")
        out = convert(np.zeros(max_map))
        out[keys] = values
        return out.reshape(1, -1)

    return run


@op("FeatureVectorizer", 1, domain=ML)
def feature_vectorizer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Inputs as [N, C_i] blocks, each cut or zero-padded to inputdimensions[i], joined as float32."""
    widths = list(ctx.attr("inputdimensions", []))
    if len(widths) != ctx.num_inputs:
        raise ctx.error("inputdimensions must give one width per input")

    def block(x, width):
        rows = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
        rows = rows[:, :width].astype(np.float32)
        return xp.pad(rows, ((0, 0), (0, width - rows.shape[1])))

    def run(*inputs):
        return xp.concatenate([block(x, w) for x, w in zip(inputs, widths)], axis=1)

    return run


@op("ArrayFeatureExtractor", 1, domain=ML)
def array_feature_extractor(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """The elements of X's last axis at the indices Y (a 1-D X gives one row)."""

    def run(x, indices):
        flat = indices.ravel()
        if flat.size and (flat.min() < 0 or flat.max() >= x.shape[-1]):
            raise IndexError(f"an index is outside [0, {x.shape[-1]})")
        picked = xp.take(x, flat, axis=-1)
        return picked.reshape(1, -1) if x.ndim == 1 else picked

    return run


@op("ZipMap", 1, domain=ML)
def zip_map(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """A list with one {class label: score} dict per row of X."""
    name, labels = _one_of(ctx, "classlabels_int64s", "classlabels_strings")
    keys = [int(k) for k in labels] if name == "classlabels_int64s" else list(labels)

    def run(x):
        rows = x.reshape(1, -1) if x.ndim == 1 else x
        if rows.shape[1] != len(keys):
            raise ValueError(f"X has {rows.shape[1]} columns for {len(keys)} class labels")
        return [dict(zip(keys, row)) for row in rows.tolist()]

    return run
