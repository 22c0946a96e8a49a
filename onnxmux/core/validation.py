"""Load-time validation as strict as onnxruntime's, on the ModelProto before the IR is built.

Tensors are checked against their dims and data type, nodes against their operator schema
(attribute names, types and presence, input and output counts, one type per type parameter),
and nodes are put in topological order (onnxruntime accepts unsorted graphs). Every failure is
an InvalidGraph naming the node, attribute or tensor.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import operator
from typing import Any, Iterable, Iterator, Sequence

import onnx
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from onnx import AttributeProto, TensorProto

from onnxmux.core import contrib_schemas
from onnxmux.core.errors import InvalidGraph
from onnxmux.core.external_data import TensorList, model_tensors
from onnxmux.core.raw_weights import Detached

_ATTR_NAME = AttributeProto.AttributeType.Name
_DATA_FIELDS = ("raw_data", "float_data", "int32_data", "string_data", "int64_data", "double_data", "uint64_data")
#: Element widths, in bits, of the types packed several to a byte.
_SUB_BYTE_BITS = {
    TensorProto.INT4: 4, TensorProto.UINT4: 4, TensorProto.FLOAT4E2M1: 4,
    TensorProto.INT2: 2, TensorProto.UINT2: 2, TensorProto.FLOAT6E2M3: 6, TensorProto.FLOAT6E3M2: 6,
}
_COMPLEX = (TensorProto.COMPLEX64, TensorProto.COMPLEX128)
#: Every element type number onnx defines (the enum's ``values()`` builds a new list each call).
_DATA_TYPES = frozenset(TensorProto.DataType.values())
#: Domains whose schemas are complete, so an attribute they do not list is an error.
_STRICT_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


# -- text ---------------------------------------------------------------------------------
def check_text(message: Message, where: str = "the model") -> None:
    """Every string field (names, op types, domains) is valid UTF-8: protobuf hands invalid
    ones back as bytes, which nothing downstream expects. (The loader skips this walk for a
    model whose bytes ``parses_with_valid_text``.)"""
    if _all_text_valid(message):
        return
    found = _bad_text(message)
    if found is not None:
        path, field, value = found
        for holder in reversed(path):
            where = _label(holder, where)
        raise InvalidGraph(f"{where}: field '{field}' holds {bytes(value)[:40]!r}, which is not valid UTF-8")


def parses_with_valid_text(data: bytes | memoryview, proto: onnx.ModelProto) -> bool:
    """Whether ``data`` (parsed as ``proto``) parses as a ModelProto whose string fields all hold
    valid UTF-8, checked by protobuf in C with a copy of onnx's schema that verifies UTF-8; False
    when it cannot tell (the walk of ``check_text`` then decides), and where the walk costs less:
    for more than ``CHECKED_PARSE_BYTES``, or more than ``CHECKED_PARSE_BYTES_PER_ITEM`` per node,
    value info and initializer of the main graph (a tree ensemble's long lists, say)."""
    checked = _utf8_checked_model()
    graph = proto.graph
    items = 1 + len(graph.node) + len(graph.value_info) + len(graph.initializer)
    if checked is None or len(data) > min(CHECKED_PARSE_BYTES, CHECKED_PARSE_BYTES_PER_ITEM * items):
        return False
    try:
        checked.FromString(data)
    except Exception:  # bad UTF-8, or anything else this copy of the schema refuses
        return False
    return True


#: Serialized models above this size, or this size per item, are not parsed a second time to
#: check their text: the walk (a few microseconds per item) costs less than parsing their
#: numbers again (a few nanoseconds per byte).
CHECKED_PARSE_BYTES = 8 << 20
CHECKED_PARSE_BYTES_PER_ITEM = 4096


@functools.lru_cache(maxsize=None)
def _utf8_checked_model() -> type[Message] | None:
    """onnx's ModelProto class rebuilt as an edition-2023 schema with proto2's semantics whose
    string fields verify UTF-8 on parsing (proto2 does not); None where protobuf cannot build it."""
    try:
        schema = descriptor_pb2.FileDescriptorProto.FromString(onnx.onnx_ml_pb2.DESCRIPTOR.serialized_pb)
        schema.name = "onnxmux/utf8-checked-onnx-ml.proto"
        schema.syntax, schema.edition = "editions", descriptor_pb2.EDITION_2023
        features = schema.options.features
        features.field_presence = descriptor_pb2.FeatureSet.EXPLICIT
        features.enum_type = descriptor_pb2.FeatureSet.CLOSED
        features.repeated_field_encoding = descriptor_pb2.FeatureSet.EXPANDED
        features.utf8_validation = descriptor_pb2.FeatureSet.VERIFY
        for message in _all_messages(schema.message_type):
            for field in message.field:
                if field.label == descriptor_pb2.FieldDescriptorProto.LABEL_REQUIRED:
                    field.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
                    field.options.features.field_presence = descriptor_pb2.FeatureSet.LEGACY_REQUIRED
                if field.options.HasField("packed"):
                    packed = field.options.packed
                    field.options.ClearField("packed")
                    encoding = descriptor_pb2.FeatureSet.PACKED if packed else descriptor_pb2.FeatureSet.EXPANDED
                    field.options.features.repeated_field_encoding = encoding
        pool = descriptor_pool.DescriptorPool()
        pool.Add(schema)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("onnx.ModelProto"))
    except Exception:  # an older protobuf without editions: the walk checks every model
        return None


def _all_messages(messages: Iterable[Any]) -> Iterator[Any]:
    for message in messages:
        yield message
        yield from _all_messages(message.nested_type)


def _all_text_valid(message: Message) -> bool:
    """Whether every string field below ``message`` holds a str, checked field by field over all
    the messages of one type at a time (the loops over messages run in C)."""
    pending = [(message.DESCRIPTOR, [message])]
    while pending:
        descriptor, messages = pending.pop()
        strings, repeated_strings, singles, repeated = _text_plan(descriptor)
        for name in strings:
            if not _all_str(map(operator.attrgetter(name), messages)):
                return False
        for name in repeated_strings:
            if not _all_str(itertools.chain.from_iterable(map(operator.attrgetter(name), messages))):
                return False
        for name in singles:
            present = filter(operator.methodcaller("HasField", name), messages)
            children = list(map(operator.attrgetter(name), present))
            if children:
                pending.append((descriptor.fields_by_name[name].message_type, children))
        for name in repeated:
            children = list(itertools.chain.from_iterable(map(operator.attrgetter(name), messages)))
            if children:
                pending.append((descriptor.fields_by_name[name].message_type, children))
    return True


def _bad_text(message: Message) -> tuple[list[Message], str, object] | None:
    """The first string field that is not valid UTF-8: the messages below ``message`` that hold
    it (innermost first), its name and value; None when all are valid (the slow search that
    names it, run once ``_all_text_valid`` found one)."""
    strings, repeated_strings, messages, repeated_messages = _text_plan(message.DESCRIPTOR)
    for name in strings:
        value = getattr(message, name)
        if type(value) is not str:
            return [], name, value
    for name in repeated_strings:
        items = getattr(message, name)
        if not _all_str(items):
            return [], name, next(item for item in items if type(item) is not str)
    children = [getattr(message, name) for name in messages if message.HasField(name)]
    for name in repeated_messages:
        children.extend(getattr(message, name))
    for child in children:
        found = _bad_text(child)
        if found is not None:
            found[0].append(child)
            return found
    return None


def _all_str(items: Iterable[object]) -> bool:
    """Whether every item is a str (the loop runs in C)."""
    return set(map(type, items)) <= _STR


_STR = {str}


@functools.lru_cache(maxsize=None)
def _text_plan(descriptor: Any) -> tuple[tuple[str, ...], ...]:
    """A message type's string and message fields, single and repeated (not ListFields: that
    would copy every raw_data)."""

    def names(kind: int, repeated: bool) -> tuple[str, ...]:
        return tuple(f.name for f in descriptor.fields if f.type == kind and f.is_repeated == repeated)

    string, message = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE
    return names(string, False), names(string, True), names(message, False), names(message, True)


def _label(message: Message, where: str) -> str:
    name = getattr(message, "name", "")
    kind = type(message).__name__.replace("Proto", "").lower()
    return f"{kind} '{name}'" if isinstance(name, str) and name else where


# -- tensors ------------------------------------------------------------------------------
def check_tensors(
    proto: onnx.ModelProto, detached: Detached | None = None, tensors: TensorList | None = None
) -> dict[str, bytes | memoryview]:
    """Every tensor's data type, dims, data field and data size agree.

    Returns the raw_data bytes read from the main graph's initializers (by name; names given
    twice are left out): protobuf copies them on each read, so the loader builds the weights
    from these instead of copying them again. The raw_data ``detached`` before parsing
    (raw_weights.py) counts as the initializer's own, unless the tensor was given data since.
    ``tensors``: ``model_tensors(proto)`` when the caller has them already.
    """
    raw: dict[str, bytes | memoryview] = {}
    twice: set[str] = set()
    main = len(proto.graph.initializer)
    for index, (where, tensor) in enumerate(model_tensors(proto) if tensors is None else tensors):
        outside = _detached_data(detached, index, tensor) if index < main else None
        data = check_tensor(f"{where} '{tensor.name}'", tensor, outside)
        if index < main and data is not None:  # model_tensors yields the main initializers first
            if tensor.name in raw:
                twice.add(tensor.name)
            raw[tensor.name] = data
    for name in twice:
        del raw[name]
    return raw


def _detached_data(detached: Detached | None, index: int, tensor: TensorProto) -> memoryview | None:
    """The raw_data detached from main initializer ``index``, while the tensor holds no data of its own."""
    if detached is None or tensor.HasField("raw_data") or tensor.data_location == TensorProto.EXTERNAL:
        return None  # given data by the session options since (add_initializer, in-memory external data)
    return detached.raw(index, tensor.name)


def check_tensor(what: str, tensor: TensorProto, raw: memoryview | None = None) -> bytes | memoryview | None:
    """One tensor's data type, dims and inline data agree (external data is checked elsewhere);
    returns its raw_data (``raw`` when it was kept outside the proto) when it has some."""
    dtype = tensor.data_type
    if dtype == TensorProto.UNDEFINED or dtype not in _DATA_TYPES:
        raise InvalidGraph(f"{what}: unknown data type {dtype}")
    if any(d < 0 for d in tensor.dims):
        raise InvalidGraph(f"{what}: negative dimension in dims {list(tensor.dims)}")
    if tensor.data_location == TensorProto.EXTERNAL:
        return None
    count = math.prod(tensor.dims)
    field = onnx.helper.tensor_dtype_to_field(dtype)
    type_name = TensorProto.DataType.Name(dtype)
    for other in _DATA_FIELDS:
        if other not in (field, "raw_data") and len(getattr(tensor, other)):
            raise InvalidGraph(f"{what}: holds {other}, but a {type_name} tensor keeps its values in {field}")
    if raw is not None or tensor.HasField("raw_data"):
        if dtype == TensorProto.STRING:
            raise InvalidGraph(f"{what}: a STRING tensor cannot hold raw_data")
        bits = _SUB_BYTE_BITS.get(dtype, 8 * onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize)
        expected = (count * bits + 7) // 8
        data = tensor.raw_data if raw is None else raw  # a copy: read once
        if len(data) != expected:
            raise InvalidGraph(
                f"{what}: dims {list(tensor.dims)} need {expected} bytes of raw_data, the tensor holds {len(data)}"
            )
        return data
    if dtype == TensorProto.STRING:
        for index, item in enumerate(tensor.string_data):
            try:
                item.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidGraph(f"{what}: string {index} is not valid UTF-8") from None
    held = len(getattr(tensor, field))
    if dtype in _SUB_BYTE_BITS:  # packed into the typed field in more than one way: only bound it
        fits = (held == 0) == (count == 0) and held <= count
    else:
        fits = held == count * (2 if dtype in _COMPLEX else 1)
    if not fits:
        raise InvalidGraph(f"{what}: dims {list(tensor.dims)} need {count} elements, the tensor holds {held} in {field}")
    return None


# -- nodes --------------------------------------------------------------------------------
def check_nodes(proto: onnx.ModelProto) -> frozenset[int]:
    """Sort every graph topologically and check each node against its operator schema; returns
    the attribute types (``AttributeProto.AttributeType`` values) the model's nodes use, so later
    walks over the attributes may be skipped when none of the kinds they look for occurs."""
    passed: set[tuple] = set()
    _check_graph(proto.graph, _opsets(proto), frozenset(), passed)
    return frozenset(kind for signature in passed for _, kind, _ in signature[4])


def _opsets(proto: onnx.ModelProto) -> dict[str, int]:
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in proto.opset_import}


def _check_graph(graph: onnx.GraphProto, opsets: dict[str, int], outer: frozenset[str], passed: set[tuple]) -> None:
    """``passed`` holds the signatures of nodes that passed ``_check_node`` (their outcome depends on
    nothing else): a model's many nodes of one op and attributes are checked once."""
    _sort(graph)
    known = outer | {i.name for i in graph.input} | {t.name for t in graph.initializer}
    known |= {s.values.name for s in graph.sparse_initializer}
    known |= {out for node in graph.node for out in node.output}
    readable = known | {""}  # an empty input name is an absent optional input
    for node in graph.node:
        signature = _node_signature(node)
        if signature not in passed:
            _check_node(node, opsets)
            passed.add(signature)
        if not readable.issuperset(node.input):
            name = next(name for name in node.input if name not in readable)
            raise InvalidGraph(
                f"{describe(node)}: input '{name}' is not a graph input, an initializer or the output of a node"
            )
        if len(node.attribute):
            for attr in node.attribute:
                for sub in _subgraphs(attr):
                    _check_graph(sub, opsets, known, passed)


def _node_signature(node: onnx.NodeProto) -> tuple:
    """All that ``_check_node`` reads of a node."""
    attributes = tuple((a.name, a.type, a.ref_attr_name) for a in node.attribute) if len(node.attribute) else ()
    return node.op_type, node.domain, len(node.input), len(node.output), attributes


def _subgraphs(attr: AttributeProto) -> Sequence[onnx.GraphProto]:
    """The graphs an attribute holds (``g``, then ``graphs``); most hold none, answered without a list."""
    if attr.HasField("g"):
        return [attr.g, *attr.graphs]
    return list(attr.graphs) if len(attr.graphs) else ()


def describe(node: onnx.NodeProto) -> str:
    """``node 'name' (Op)`` for messages (an unnamed node by its first output)."""
    if node.name or not node.output:
        return f"node '{node.name}' ({node.op_type})"
    return f"the {node.op_type} node making '{node.output[0]}'"


def schema_of(node: onnx.NodeProto, opsets: dict[str, int]) -> onnx.defs.OpSchema | None:
    """The schema the model's opset selects for ``node``, None for operators onnx does not define."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    version = opsets.get(domain)
    if version is None:
        return None
    return _schema(node.op_type, version, domain)


def _schema(op_type: str, version: int, domain: str) -> onnx.defs.OpSchema | None:
    """onnx's schema lookup, remembered per (op, opset, domain): it copies the whole schema each call."""
    if contrib_schemas.typing_only(op_type, domain):
        return None
    key = (op_type, version, domain)
    schema = _SCHEMAS.get(key)
    if schema is None:
        try:
            schema = _SCHEMAS[key] = onnx.defs.get_schema(op_type, version, domain)
        except onnx.defs.SchemaError:
            return None  # not remembered: a schema may be registered later
    return schema


#: Schemas found, by (op type, opset, domain).
_SCHEMAS: dict[tuple[str, int, str], onnx.defs.OpSchema] = {}


def _check_node(node: onnx.NodeProto, opsets: dict[str, int]) -> None:
    seen: set[str] = set()
    for attr in node.attribute:
        if attr.name in seen:
            raise InvalidGraph(f"{describe(node)}: attribute '{attr.name}' is given twice")
        seen.add(attr.name)
    schema = schema_of(node, opsets)
    if schema is None:
        return
    op = f"{node.op_type}-{schema.since_version}"
    attributes = _signature(schema)[2]
    for attr in node.attribute:
        spec = attributes.get(attr.name)
        if spec is None:
            if schema.domain in _STRICT_DOMAINS:
                raise InvalidGraph(f"{describe(node)}: attribute '{attr.name}' is not an attribute of {op}")
            continue
        if attr.ref_attr_name:
            continue
        if attr.type != AttributeProto.UNDEFINED and int(attr.type) != int(spec.type):
            raise InvalidGraph(
                f"{describe(node)}: attribute '{attr.name}' is a {_ATTR_NAME(attr.type)}; "
                f"the schema wants {_ATTR_NAME(int(spec.type))}"
            )
    for name, spec in attributes.items():
        if spec.required and name not in seen:
            raise InvalidGraph(f"{describe(node)}: required attribute '{name}' is missing")
    _check_count(node, "inputs", len(node.input), schema.min_input, schema.max_input, op)
    _check_count(node, "outputs", len(node.output), schema.min_output, schema.max_output, op)


def _check_count(node: onnx.NodeProto, what: str, count: int, low: int, high: int, op: str) -> None:
    if low <= count <= high:
        return
    takes = str(low) if low == high else f"{low} to {high}" if high < 2**31 - 1 else f"at least {low}"
    raise InvalidGraph(f"{describe(node)}: has {count} {what}; {op} takes {takes}")


def _names_read(node: onnx.NodeProto) -> Iterator[str]:
    """The values a node reads, its subgraphs' reads from outer scopes included."""
    yield from (name for name in node.input if name)
    for attr in node.attribute:
        for sub in _subgraphs(attr):
            local = {i.name for i in sub.input} | {t.name for t in sub.initializer}
            local.update(out for inner in sub.node for out in inner.output)
            for inner in sub.node:
                yield from (name for name in _names_read(inner) if name not in local)


def _in_order(graph: onnx.GraphProto) -> bool:
    """Whether every node reads only values made by earlier nodes (the usual case, checked
    without building each node's dependencies): walking back from the last node, ``later``
    holds the names made by the node at hand or a later one."""
    later: set[str] = set()
    for node in reversed(graph.node):
        later.update(node.output)
        later.discard("")  # an omitted optional output
        if not later.isdisjoint(node.input):
            return False
        if len(node.attribute) and any(attr.HasField("g") or len(attr.graphs) for attr in node.attribute):
            if not later.isdisjoint(_names_read(node)):
                return False
    return True


def _sort(graph: onnx.GraphProto) -> None:
    """Put the nodes in topological order (stable); a cycle is an InvalidGraph."""
    if _in_order(graph):
        return
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    deps = [{producer[n] for n in _names_read(node) if n in producer} for node in graph.node]
    users: list[list[int]] = [[] for _ in graph.node]
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    waiting = [len(ds) for ds in deps]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for user in users[i]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(graph.node):
        stuck = [describe(graph.node[i]) for i in range(len(graph.node)) if waiting[i] > 0]
        raise InvalidGraph(f"the nodes {', '.join(stuck[:5])} form a cycle")
    nodes = [graph.node[i] for i in order]
    copies = [onnx.NodeProto() for _ in nodes]
    for copy, node in zip(copies, nodes):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)


# -- types --------------------------------------------------------------------------------
def type_name(type_proto: onnx.TypeProto) -> str | None:
    """``tensor(float)`` for a tensor type with a known element type; None otherwise."""
    if type_proto.WhichOneof("value") != "tensor_type":
        return None
    return _TENSOR_NAMES.get(type_proto.tensor_type.elem_type)


#: ``tensor(float)`` and the like by element type number (UNDEFINED has none).
_TENSOR_NAMES = {t: f"tensor({TensorProto.DataType.Name(t).lower()})" for t in _DATA_TYPES if t != TensorProto.UNDEFINED}


def check_type_parameters(proto: onnx.ModelProto) -> None:
    """Inputs bound to one type parameter share one type, and it is one the schema allows."""
    _check_graph_types(proto.graph, _opsets(proto), {}, set())


def _check_graph_types(graph: onnx.GraphProto, opsets: dict[str, int], outer: dict[str, str], passed: set[tuple]) -> None:
    """``passed`` holds the (op, domain, input types) of nodes whose bindings passed: those are
    all the check reads (an empty or unknown input is skipped), so each combination is checked once."""
    types = dict(outer)
    for info in (*graph.input, *graph.value_info, *graph.output):
        name = type_name(info.type)
        if name is not None:
            types[info.name] = name
    for tensor in graph.initializer:
        name = _TENSOR_NAMES.get(tensor.data_type)
        if name is not None:
            types[tensor.name] = name
    for node in graph.node:
        signature = (node.op_type, node.domain, *map(types.get, node.input))
        if signature not in passed:
            schema = schema_of(node, opsets)
            if schema is not None:
                _check_bindings(node, schema, types)
            passed.add(signature)
        for attr in node.attribute:
            for sub in _subgraphs(attr):
                _check_graph_types(sub, opsets, types, passed)


def _signature(schema: onnx.defs.OpSchema) -> _Signature:
    """The schema's allowed types per type parameter, formal inputs and attributes, read once per
    schema (each read of a schema's properties builds them anew)."""
    key = (schema.domain, schema.name, schema.since_version)
    found = _SIGNATURES.get(key)
    if found is None:
        constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        found = _SIGNATURES[key] = (constraints, list(schema.inputs), dict(schema.attributes))
    return found


_Signature = tuple[dict[str, set[str]], list[Any], dict[str, Any]]
_SIGNATURES: dict[tuple[str, str, int], _Signature] = {}


def _check_bindings(node: onnx.NodeProto, schema: onnx.defs.OpSchema, types: dict[str, str]) -> None:
    constraints, formals, _ = _signature(schema)
    bound: dict[str, tuple[str, str]] = {}
    for index, name in enumerate(node.input):
        if not name or not formals or name not in types:
            continue
        formal = formals[min(index, len(formals) - 1)]
        if index >= len(formals) and formal.option != onnx.defs.OpSchema.FormalParameterOption.Variadic:
            continue
        param = formal.type_str
        if param not in constraints:
            continue
        actual = types[name]
        op = f"{node.op_type}-{schema.since_version}"
        if constraints[param] and actual not in constraints[param]:
            raise InvalidGraph(
                f"{describe(node)}: input '{name}' is {actual}, which {op} does not accept for its "
                f"type parameter {param} ({', '.join(sorted(constraints[param]))})"
            )
        homogeneous = formal.option != onnx.defs.OpSchema.FormalParameterOption.Variadic or formal.is_homogeneous
        first = bound.setdefault(param, (name, actual))
        if homogeneous and first[1] != actual:
            raise InvalidGraph(
                f"{describe(node)}: inputs of type parameter {param} differ: {first[1]} and {actual} "
                f"('{first[0]}' and '{name}')"
            )


def check_declared_outputs(graph: onnx.GraphProto, inferred: Iterable[onnx.ValueInfoProto]) -> None:
    """A graph output's declared element type is the one its producer makes."""
    for declared, found in zip(graph.output, inferred):
        want, got = type_name(declared.type), type_name(found.type)
        if want is not None and got is not None and want != got:
            maker = next((node for node in reversed(graph.node) if declared.name in node.output), None)
            source = describe(maker) if maker is not None else "the graph"
            raise InvalidGraph(f"graph output '{declared.name}' is declared {want} but {source} makes {got}")
