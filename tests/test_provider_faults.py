"""Fault injection: misbehaving kernel- and compile-based plugins, raising in every hook or
returning wrong values. Every case is a clear error naming the provider, or a fallback with a
warning naming it; none is silent."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pytest
from onnx import TensorProto, helper
from test_providers import COMPILABLE, CompileTestProvider, DeviceArray, DeviceTransfer, _device_registry
from test_providers import forget_registered_providers  # noqa: F401 (a fixture, used by pytestmark)

import onnxmux
from onnxmux import ep

V = helper.make_tensor_value_info


pytestmark = pytest.mark.usefixtures("forget_registered_providers")

X = np.array([[-1.0, 4.0, -9.0], [16.0, -25.0, 36.0]], dtype=np.float32)


def chain() -> bytes:
    """x -> Relu -> Sqrt -> Abs -> y, and Split(y) -> (a, b)."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sqrt", ["r"], ["s"], name="sqrt"),
        helper.make_node("Abs", ["s"], ["y"], name="abs"),
        helper.make_node("Split", ["y"], ["a", "b"], name="split", axis=1, num_outputs=2),
    ]
    graph = helper.make_graph(
        nodes, "g", [V("x", TensorProto.FLOAT, [2, 3])],
        [V("y", TensorProto.FLOAT, [2, 3]), V("a", TensorProto.FLOAT, [2, 2]), V("b", TensorProto.FLOAT, [2, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


EXPECTED = onnxmux.InferenceSession(chain()).run(None, {"x": X})

#: What a faulty Relu kernel returns instead of its result (a device array of the right value).
BAD_VALUES: dict[str, Callable[[Any], Any]] = {
    "wrong dtype": lambda r: DeviceArray(r.array.astype(np.float64)),
    "wrong shape": lambda r: DeviceArray(r.array.reshape(3, 2)),
    "wrong rank": lambda r: DeviceArray(r.array.reshape(6)),
    "host array": lambda r: r.array,
    "no value": lambda r: None,
    "too few outputs": lambda r: (),
}


def kernel_provider(fault: str, ops: frozenset = frozenset({"Relu", "Sqrt", "Split"})) -> type[ep.KernelProvider]:
    """A test-device kernel provider for ``ops`` whose Relu kernel (or a hook) misbehaves as ``fault`` says."""
    registry = _device_registry(lambda op: op in ops)

    def boom(*args: Any) -> Any:
        raise RuntimeError(f"injected {fault}")

    for kernel in list(registry._defs[("", "Relu")]):
        factory, supports = kernel.factory, kernel.supports
        if fault == "supports":
            supports = boom
        elif fault == "factory":
            factory = boom
        elif fault in BAD_VALUES:
            factory = _bad_factory(factory, BAD_VALUES[fault])
        registry._defs[("", "Relu")].remove(kernel)
        registry.add(ep.KernelDef(kernel.op_type, kernel.domain, kernel.since, factory, supports))

    class Faulty(ep.KernelProvider):
        __test__ = False
        name = "FaultyKernelExecutionProvider"
        device = "faultydev:0"
        data_transfer = DeviceTransfer()

        def rewrite_partition(self, graph, nodes):
            if fault == "rewrite_partition":
                raise RuntimeError("injected rewrite_partition")
            return nodes

        @classmethod
        def unavailable_reason(cls):
            if fault == "unavailable_reason":
                raise RuntimeError("injected unavailable_reason")
            return None

    Faulty.registry = registry
    onnxmux.register_provider(Faulty)
    return Faulty


def _bad_factory(factory: Callable, corrupt: Callable[[Any], Any]) -> Callable:
    def make(ctx, xp):
        run = factory(ctx, xp)
        return lambda *args: corrupt(run(*args))

    return make


def compile_provider(fault: str) -> type[ep.CompileProvider]:
    """A compile-based provider (Relu, Sqrt, Abs) whose hook or compiled function misbehaves."""

    class FaultyCompile(CompileTestProvider):
        __test__ = False
        name = "FaultyCompileExecutionProvider"

        def claim(self, graph, candidates):
            if fault == "claim":
                raise RuntimeError("injected claim")
            return [[n for n in candidates if n.op_type in {"Relu", "Sqrt", "Abs"} & COMPILABLE]]

        def compile(self, subgraph):
            if fault == "compile":
                raise RuntimeError("injected compile")
            run = super().compile(subgraph)
            if fault == "wrong dtype":
                return lambda *v: tuple(o.astype(np.float64) for o in run(*v))
            if fault == "wrong shape":
                return lambda *v: tuple(o.reshape(-1) for o in run(*v))
            if fault == "too few outputs":
                return lambda *v: ()
            if fault == "no value":
                return lambda *v: (None,)
            return run

    onnxmux.register_provider(FaultyCompile)
    return FaultyCompile


def _session(cls: type, config: dict[str, str] | None = None) -> onnxmux.InferenceSession:
    options = onnxmux.SessionOptions()
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    return onnxmux.InferenceSession(chain(), options, providers=[cls.name, "cpu"])


def _assert_same(got: list) -> None:
    for g, e in zip(got, EXPECTED):
        np.testing.assert_array_equal(g, e)


HOOK_FAULTS = [
    (kernel_provider, "supports", "supports"),
    (kernel_provider, "factory", "kernel factory"),
    (kernel_provider, "rewrite_partition", "rewrite_partition"),
    (compile_provider, "claim", "claim"),
    (compile_provider, "compile", "compile"),
]


@pytest.mark.parametrize("make,fault,hook", HOOK_FAULTS, ids=[f[1] for f in HOOK_FAULTS])
def test_a_raising_hook_falls_back_with_one_warning(make, fault, hook) -> None:
    cls = make(fault)
    with pytest.warns(ep.ProviderFallbackWarning) as record:
        session = _session(cls)
    messages = [str(w.message) for w in record if issubclass(w.category, ep.ProviderFallbackWarning)]
    assert len(messages) == 1, messages
    assert f"{cls.name}.{hook} raised RuntimeError" in messages[0] and "'relu' (Relu)" in messages[0]
    _assert_same(session.run(None, {"x": X}))
    relu = next(n for n in session.get_execution_plan().to_dict()["nodes"] if n["name"] == "relu")
    expected_owner = cls.name if hook == "rewrite_partition" else "CPUExecutionProvider"
    assert relu["provider"] == expected_owner


@pytest.mark.parametrize("make,fault,hook", HOOK_FAULTS, ids=[f[1] for f in HOOK_FAULTS])
def test_a_raising_hook_is_an_ep_fail_without_fallback(make, fault, hook) -> None:
    cls = make(fault)
    with pytest.raises(ep.EPFail, match=rf"{cls.name}\.{hook} raised RuntimeError.*'relu' \(Relu\).*disable_cpu_ep_fallback"):
        _session(cls, {"session.disable_cpu_ep_fallback": "1"})


def test_a_raising_availability_check_skips_or_fails() -> None:
    cls = kernel_provider("unavailable_reason")
    with pytest.warns(UserWarning, match=f"{cls.name} is not available.*injected unavailable_reason"):
        session = _session(cls)
    assert session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ep.EPFail, match=f"{cls.name}.unavailable_reason raised"):
        _session(cls, {"session.disable_cpu_ep_fallback": "1"})


def test_a_factory_failure_with_nothing_else_to_run_the_node_is_an_ep_fail() -> None:
    cls = kernel_provider("factory")
    options = onnxmux.SessionOptions()
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                          [V("x", TensorProto.FLOAT, [2, 3])], [V("y", TensorProto.FLOAT, [2, 3])]),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with pytest.raises(ep.EPFail, match=f"{cls.name}.kernel factory raised RuntimeError.*'relu'"):
        onnxmux.InferenceSession(model.SerializeToString(), options, providers=[cls.name])


KERNEL_VALUE_FAULTS = {
    "wrong dtype": "expected element type float, got double",
    "wrong shape": r"expected shape \[2, 3\], got \[3, 2\]",
    "wrong rank": r"expected rank 2 \(shape \[2, 3\]\), got rank 1",
    "host array": "expected a device array, got numpy.ndarray",
    "no value": "got no value",
    "too few outputs": "expected 1 outputs, got 0",
}


@pytest.mark.parametrize("fault", sorted(KERNEL_VALUE_FAULTS))
def test_a_wrong_kernel_output_is_caught_at_the_node_under_the_full_check(fault: str) -> None:
    cls = kernel_provider(fault)
    session = _session(cls, {"session.check_provider_outputs": "1"})
    with pytest.raises(ep.ProviderError, match=rf"{cls.name} kernel of node 'relu' .*{KERNEL_VALUE_FAULTS[fault]}"):
        session.run(None, {"x": X})
    with pytest.raises(ep.ProviderError):  # the session stays usable, and stays strict
        session.run(None, {"x": X})


@pytest.mark.parametrize("fault", sorted(KERNEL_VALUE_FAULTS))
def test_a_wrong_kernel_output_never_reaches_the_user(fault: str) -> None:
    # Relu -> Sqrt both run on the device: without the full check Relu's output is not at a
    # boundary, so the fault is caught where it leaves the device, or fails the next kernel.
    cls = kernel_provider(fault)
    session = _session(cls)
    with pytest.raises(onnxmux.OnnxMuxError, match=rf"{cls.name} kernel of node '(relu|sqrt)'|node 'sqrt'"):
        session.run(None, {"x": X})


@pytest.mark.parametrize("fault", sorted(KERNEL_VALUE_FAULTS))
def test_a_wrong_kernel_output_at_a_boundary_is_always_caught(fault: str) -> None:
    cls = kernel_provider(fault, ops=frozenset({"Relu"}))  # Relu's output goes to the CPU
    session = _session(cls)
    with pytest.raises(ep.ProviderError, match=rf"{cls.name} kernel of node 'relu' .*{KERNEL_VALUE_FAULTS[fault]}"):
        session.run(None, {"x": X})


COMPILED_VALUE_FAULTS = {
    "wrong dtype": "expected element type float, got double",
    "wrong shape": r"expected rank 2 \(shape \[2, 3\]\), got rank 1",
    "too few outputs": "expected 1 outputs, got 0",
    "no value": "got no value",
}


@pytest.mark.parametrize("fault", sorted(COMPILED_VALUE_FAULTS))
def test_a_wrong_compiled_output_is_caught(fault: str) -> None:
    cls = compile_provider(fault)
    session = _session(cls)
    pattern = rf"{cls.name} partition of 3 nodes \(relu, sqrt, abs\) returned a wrong output: .*{COMPILED_VALUE_FAULTS[fault]}"
    with pytest.raises(ep.ProviderError, match=pattern):
        session.run(None, {"x": X})


def test_correct_providers_pass_every_check() -> None:
    for cls in (kernel_provider("none"), compile_provider("none")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            session = _session(cls, {"session.check_provider_outputs": "1"})
        _assert_same(session.run(None, {"x": X}))


def test_a_device_without_a_data_transfer_is_refused() -> None:
    class NoTransfer(ep.KernelProvider):
        name = "NoTransferExecutionProvider"
        device = "nowhere:0"
        registry = ep.KernelRegistry()

    with pytest.raises(ep.InvalidArgument, match="NoTransferExecutionProvider is refused: .*'nowhere:0'.*no data_transfer"):
        ep.register_provider(NoTransfer)

    class LateTransfer(NoTransfer):  # sets data_transfer in __init__, so it is checked there
        name = "LateTransferExecutionProvider"

        def __init__(self, options=None):
            super().__init__(options)

    ep.register_provider(LateTransfer)
    with pytest.raises(ep.ProviderError, match="LateTransferExecutionProvider is refused"):
        _session(LateTransfer)


def test_a_graph_output_that_differs_from_its_declared_dims_warns_once() -> None:
    # Converters sometimes declare wrong output dims: like onnxruntime, a warning, not an error.
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "g",
                              [V("x", TensorProto.FLOAT, ["n", 3])], [V("y", TensorProto.FLOAT, [5, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
    session = onnxmux.InferenceSession(model)
    with pytest.warns(UserWarning, match=r"graph output 'y': expected shape \[5, 3\], got \[2, 3\] \(the model declares"):
        np.testing.assert_array_equal(session.run(None, {"x": X})[0], np.maximum(X, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session.run(None, {"x": X})
