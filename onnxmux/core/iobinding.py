"""IOBinding: feeding inputs that already live on a device and keeping outputs on one.

A run through a binding uses a variant of the session's plan (``placement.py``) in which an
input bound on the device of the node that reads it is not copied, and an output bound to
the device that makes it is not copied back to the host.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from onnxmux.core import devices, run_control
from onnxmux.core.devices import CPU, Device
from onnxmux.core.errors import InvalidArgument
from onnxmux.core.feeds import detach
from onnxmux.core.ortvalue import OrtValue, OrtValueVector, element_dtype
from onnxmux.core.placement import place

if TYPE_CHECKING:
    from onnxmux.core.session import InferenceSession


class IOBinding:
    """Inputs and outputs bound to devices for ``session.run_with_iobinding``, as onnxruntime's IOBinding."""

    def __init__(self, session: InferenceSession) -> None:
        self._session = session
        self._inputs: dict[str, OrtValue] = {}
        #: Output name -> (device, value to fill or None).
        self._outputs: dict[str, tuple[Device, Any]] = {}
        self._results: list[OrtValue] = []

    # -- inputs -------------------------------------------------------------------------
    def bind_cpu_input(self, name: str, arr_on_cpu: Any) -> None:
        """Bind an input to a host array (shared, not copied)."""
        self._bind_input(name, OrtValue.ortvalue_from_numpy(arr_on_cpu))

    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any, shape: Sequence[int], buffer_ptr: int) -> None:
        """Bind an input to memory at ``buffer_ptr``: host memory only (bind an OrtValue for device memory)."""
        device = self._device(device_type, device_id)
        if device is not CPU:
            raise InvalidArgument(
                f"bind_input('{name}'): a raw pointer can name host memory only; for {device.name} "
                "bind an OrtValue made on that device (bind_ortvalue_input)"
            )
        self._bind_input(name, OrtValue(_host_view(buffer_ptr, element_type, shape)))

    def bind_ortvalue_input(self, name: str, ortvalue: OrtValue) -> None:
        """Bind an input to an OrtValue, on whatever device holds it."""
        if not isinstance(ortvalue, OrtValue):
            raise InvalidArgument(f"bind_ortvalue_input('{name}'): expected an OrtValue, got {type(ortvalue).__name__}")
        self._bind_input(name, ortvalue)

    def _bind_input(self, name: str, value: OrtValue) -> None:
        if name not in self._session._input_index:
            raise InvalidArgument(f"Failed to find NodeArg with name: {name} in the def list (the model has no input '{name}')")
        self._inputs[name] = value

    def synchronize_inputs(self) -> None:
        """Nothing to wait for: device uploads are ordered before the kernels that read them."""

    def clear_binding_inputs(self) -> None:
        """Forget the bound inputs."""
        self._inputs.clear()

    # -- outputs ------------------------------------------------------------------------
    def bind_output(
        self,
        name: str,
        device_type: str = "cpu",
        device_id: int = 0,
        element_type: Any = None,
        shape: Sequence[int] | None = None,
        buffer_ptr: int | None = None,
    ) -> None:
        """Have an output left on a device; with ``buffer_ptr`` (host memory), written there."""
        device = self._device(device_type, device_id)
        target = None
        if buffer_ptr is not None:
            if element_type is None or shape is None:
                raise InvalidArgument("`element_type` and `shape` are to be provided if pre-allocated memory is provided")
            if device is not CPU:
                raise InvalidArgument(f"bind_output('{name}'): a raw pointer can name host memory only, not {device.name}")
            target = OrtValue(_host_view(buffer_ptr, element_type, shape))
        self._bind_output(name, device, target)

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        """Have an output written into an existing OrtValue (same shape and type), on its device."""
        if not isinstance(ortvalue, OrtValue):
            raise InvalidArgument(f"bind_ortvalue_output('{name}'): expected an OrtValue, got {type(ortvalue).__name__}")
        self._bind_output(name, ortvalue._device, ortvalue)

    def _bind_output(self, name: str, device: Device, target: OrtValue | None) -> None:
        if name not in self._session._output_index:
            raise InvalidArgument(f"Failed to find NodeArg with name: {name} in the def list (the model has no output '{name}')")
        self._outputs[name] = (device, target)

    def synchronize_outputs(self) -> None:
        """Nothing to wait for: reading a device output waits for the kernels that make it."""

    def clear_binding_outputs(self) -> None:
        """Forget the bound outputs."""
        self._outputs.clear()

    def get_outputs(self) -> list[OrtValue]:
        """The outputs of the last ``run_with_iobinding``, on the devices they were bound to."""
        return list(self._results)

    def get_outputs_as_ortvaluevector(self) -> OrtValueVector:
        """The outputs of the last run as an OrtValueVector."""
        return OrtValueVector(self._results)

    def copy_outputs_to_cpu(self) -> list[Any]:
        """The outputs of the last run as host arrays."""
        return [v.numpy() for v in self._results]

    def _device(self, device_type: str, device_id: int) -> Device:
        return devices.resolve(device_type, device_id, self._session._providers)

    def _run(self, run_options: Any = None) -> None:
        if not self._outputs:
            raise InvalidArgument("run_with_iobinding: no output is bound. At least one output should be requested.")
        wanted = {name: device for name, (device, _) in self._outputs.items()}
        self._results = run_placed(self._session, self._inputs, wanted, run_options)
        for result, (_, target) in zip(self._results, self._outputs.values()):
            if target is not None:
                target.update_inplace(result.numpy())


def run_placed(
    session: InferenceSession, inputs: Mapping[str, Any], outputs: Mapping[str, Device], run_options: Any = None
) -> list[OrtValue]:
    """Run ``session`` on inputs (OrtValues on any device, or host values) with each output left
    on the given device; the plan variant for that placement is built once and kept. ``run_options``
    can stop the run, as in ``session.run``."""
    feed: dict[str, Any] = {}
    input_devices: dict[int, Device] = {}
    for name, value in inputs.items():
        if name not in session._input_index:
            raise session._unknown_input(name)
        if isinstance(value, OrtValue) and value._device is not CPU:
            spec = session._inputs[session._input_index[name]]
            if value.is_tensor():
                spec.check_tensor(np.dtype(value._tensor().dtype), value.shape())
            input_devices[session._input_index[name]] = value._device
            feed[name] = value._value
        else:
            feed[name] = value._value if isinstance(value, OrtValue) else value
    positions = session._output_positions(list(outputs))
    output_devices = {p: d for p, d in zip(positions, outputs.values()) if d is not CPU}
    values = session._feed_values(feed, placed=input_devices)
    plan = _variant(session, input_devices, output_devices)
    control = run_control.start(run_options, session._timeout_ms, session._max_bytes)
    results = session._intra_op(plan.execute, values, (), control)
    host = detach([results[p] for p in positions], [v for i, v in enumerate(values) if i not in input_devices])
    return [OrtValue(v, outputs[name]) for v, name in zip(host, outputs)]


def _variant(session: InferenceSession, inputs: Mapping[int, Device], outputs: Mapping[int, Device]) -> Any:
    if not inputs and not outputs:
        return session._plan
    key = (tuple(sorted((p, d.name) for p, d in inputs.items())), tuple(sorted((p, d.name) for p, d in outputs.items())))
    plan = session._placed_plans.get(key)
    if plan is None:
        bound = [d for d in [*inputs.values(), *outputs.values()] if d.transfer is not None]
        transfers = {p.device: p.data_transfer for p in session._providers if p.data_transfer is not None}
        transfers.update({d.name: d.transfer for d in bound})
        owners = {d.name: d.provider.name for d in bound if d.provider is not None}
        owners.update({p.device: p.name for p in session._providers})
        plan = session._placed_plans[key] = place(
            session._plan,
            {p: d.name for p, d in inputs.items()},
            {p: d.name for p, d in outputs.items()},
            transfers,
            owners,
        )
    return plan


def _host_view(buffer_ptr: int, element_type: Any, shape: Sequence[int]) -> np.ndarray:
    """A numpy array over host memory at ``buffer_ptr`` (no copy)."""
    dtype = element_dtype(element_type)
    if dtype == object:
        raise InvalidArgument("string tensors cannot be bound through a raw pointer")
    count = math.prod(int(d) for d in shape)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(int(buffer_ptr))
    return np.frombuffer(raw, dtype=dtype, count=count).reshape([int(d) for d in shape])

