"""OrtValue and IOBinding on devices: the OpenCL provider (PoCL) and the test device, with the
copies each run makes counted."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_providers import DeviceArray, DeviceTransfer, TestDeviceProvider

import onnxmux as ort
from onnxmux.core.placement import copy_count


class CountingTransfer(DeviceTransfer):
    """The test device's transfer, counting the copies each way."""

    def __init__(self) -> None:
        self.up = self.down = 0

    def to_device(self, value):
        self.up += 1
        return super().to_device(value)

    def to_host(self, value):
        self.down += 1
        return super().to_host(value)


class CountingDeviceProvider(TestDeviceProvider):
    """The test device (Relu runs there, Add on the CPU), on a device of its own with counted copies."""

    name = "CountingDeviceExecutionProvider"
    aliases = ("counting-device",)
    device = "countdev:0"
    data_transfer = CountingTransfer()


ort.register_provider(CountingDeviceProvider)
COUNTER = CountingDeviceProvider.data_transfer


def relu_add_relu() -> onnx.ModelProto:
    """y = Relu(Relu(x) + b): both Relus run on the test device, the Add on the CPU."""
    bias = numpy_helper.from_array(np.array([0.5, -1.0, 2.0], np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Add", ["r", "b"], ["a"]),
            helper.make_node("Relu", ["a"], ["y"]),
        ],
        "relu_add_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        [bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def reference(x: np.ndarray) -> np.ndarray:
    return np.maximum(np.maximum(x, 0) + np.array([0.5, -1.0, 2.0], np.float32), 0)


def session(provider: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(relu_add_relu().SerializeToString(), options, providers=[provider])


X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def counted_run(sess: ort.InferenceSession, binding: ort.IOBinding) -> tuple[int, int]:
    up, down = COUNTER.up, COUNTER.down
    sess.run_with_iobinding(binding)
    return COUNTER.up - up, COUNTER.down - down


def test_test_device_binding_drops_the_input_and_output_copies() -> None:
    sess = session("counting-device")
    assert [c["value"] for c in sess.get_execution_plan().to_dict()["copies"]] == ["x", "r", "a", "y"]
    host = sess.io_binding()
    host.bind_cpu_input("x", X)
    host.bind_output("y")
    assert counted_run(sess, host) == (2, 2)  # x up, r down, a up, y down
    np.testing.assert_allclose(host.copy_outputs_to_cpu()[0], reference(X))

    value = ort.OrtValue.ortvalue_from_numpy(X, "countdev", 0)
    assert isinstance(value._value, DeviceArray) and value.device_name() == "countdev"
    bound = sess.io_binding()
    bound.bind_ortvalue_input("x", value)
    bound.bind_output("y", "countdev", 0)
    assert counted_run(sess, bound) == (1, 1)  # only r down and a up remain
    (out,) = bound.get_outputs()
    assert isinstance(out._value, DeviceArray) and out.device_name() == "countdev" and out.shape() == [4, 3]
    np.testing.assert_allclose(out.numpy(), reference(X))
    assert counted_run(sess, bound) == (1, 1)  # the variant plan is kept and reused
    assert len(sess._placed_plans) == 1


def test_test_device_value_bound_to_a_host_session_is_copied_once() -> None:
    sess = session("cpu")
    value = ort.OrtValue.ortvalue_from_numpy(X, "countdev", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", value)
    binding.bind_output("y", "countdev", 0)
    assert counted_run(sess, binding) == (1, 1)  # the input comes down, the output goes up
    (variant,) = sess._placed_plans.values()
    assert copy_count(variant) == 2
    assert binding.get_outputs()[0].device_name() == "countdev"
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], reference(X))


def test_bound_device_input_is_checked_like_a_feed() -> None:
    sess = session("counting-device")
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(X.astype(np.float64), "countdev", 0))
    binding.bind_output("y")
    with pytest.raises(ort.InvalidArgument, match="Unexpected input data type"):
        sess.run_with_iobinding(binding)
    binding.bind_ortvalue_input("x", ort.OrtValue.ortvalue_from_numpy(X, "countdev", 0))
    sess.run_with_iobinding(binding)
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], reference(X))


def test_run_with_ort_values_takes_device_inputs_without_copying_them() -> None:
    sess = session("counting-device")
    value = ort.OrtValue.ortvalue_from_numpy(X, "countdev", 0)
    up, down = COUNTER.up, COUNTER.down
    (out,) = sess.run_with_ort_values(["y"], {"x": value})
    assert (COUNTER.up - up, COUNTER.down - down) == (1, 2)  # r down, a up, y down: x stays
    assert out.device_name() == "cpu"
    np.testing.assert_allclose(out.numpy(), reference(X))


opencl = pytest.importorskip("pyopencl")


@pytest.fixture(scope="module")
def cl_session() -> ort.InferenceSession:
    if "OpenCLExecutionProvider" not in ort.get_available_providers():
        pytest.fail("the OpenCL provider is not available (PoCL should be installed)")
    return session("opencl")


def test_opencl_binding_keeps_values_on_the_device(cl_session) -> None:
    runtime = cl_session._providers[0].xp
    assert [c["value"] for c in cl_session.get_execution_plan().to_dict()["copies"]] == ["x", "y"]
    value = ort.OrtValue.ortvalue_from_numpy(X, "opencl", 0)
    assert value.device_name() == "opencl" and value.shape() == [4, 3] and value.data_type() == "tensor(float)"
    binding = cl_session.io_binding()
    binding.bind_ortvalue_input("x", value)
    binding.bind_output("y", "opencl", 0)
    uploads, downloads = runtime.uploads, runtime.downloads
    cl_session.run_with_iobinding(binding)
    assert (runtime.uploads - uploads, runtime.downloads - downloads) == (0, 0)
    (out,) = binding.get_outputs()
    assert out.device_name() == "opencl" and type(out._value).__name__ == "CLTensor"
    np.testing.assert_allclose(out.numpy(), reference(X), rtol=1e-6)
    assert runtime.downloads - downloads == 1  # reading it is the one copy


def test_opencl_host_binding_and_preallocated_output(cl_session) -> None:
    runtime = cl_session._providers[0].xp
    target = ort.OrtValue.ortvalue_from_shape_and_type([4, 3], np.float32, "opencl", 0)
    binding = cl_session.io_binding()
    binding.bind_cpu_input("x", X)
    binding.bind_ortvalue_output("y", target)
    uploads = runtime.uploads
    cl_session.run_with_iobinding(binding)
    np.testing.assert_allclose(target.numpy(), reference(X), rtol=1e-6)
    assert runtime.uploads - uploads >= 1  # the host input went up once
    value = ort.OrtValue.ortvalue_from_numpy(np.zeros((2, 3), np.float32), "opencl", 0)
    value.update_inplace(X[:2])
    np.testing.assert_array_equal(value.numpy(), X[:2])
