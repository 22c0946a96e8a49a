"""A subgraph compiled by OpenVINO, callable with numpy arrays from several threads at once."""

from __future__ import annotations

import io
import queue
import threading
from typing import Any, Sequence

import numpy as np
import onnx


class RequestPool:
    """Infer requests of one compiled model; each call borrows one, so threads never share one."""

    def __init__(self, compiled_model: Any) -> None:
        self.compiled_model = compiled_model
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def infer(self, inputs: list[np.ndarray]) -> Any:
        """Run one inference on a free request (a new one when all are busy); outputs are copies."""
        try:
            request = self._free.get_nowait()
        except queue.Empty:
            request = self.compiled_model.create_infer_request()
        try:
            return request.infer(inputs, share_inputs=True, share_outputs=False)
        finally:
            self._free.put(request)


class CompiledSubgraph:
    """Runs an OpenVINO model for a subgraph: inputs in ``input_names`` order, outputs as a tuple.

    With ``static_shapes`` the model is reshaped to each new combination of input shapes and
    compiled for it (kept for later calls); otherwise it is compiled once with its dynamic
    dimensions. Outputs come back with the element types the ONNX subgraph declares.
    """

    def __init__(
        self,
        core: Any,
        ov_model: Any,
        device: str,
        config: dict[str, Any],
        input_names: Sequence[str],
        outputs: Sequence[onnx.ValueInfoProto],
        static_shapes: bool,
    ) -> None:
        self.core = core
        self.ov_model = ov_model
        self.device = device
        self.config = config
        self.input_names = list(input_names)
        self.output_names = [o.name for o in outputs]
        self.output_dtypes = [onnx.helper.tensor_dtype_to_np_dtype(o.type.tensor_type.elem_type) for o in outputs]
        self.static_shapes = ov_model is not None and static_shapes and not all(
            i.get_partial_shape().is_static for i in ov_model.inputs
        )
        self._pools: dict[tuple, tuple[RequestPool, list[int], list[int]]] = {}
        self._lock = threading.Lock()
        if ov_model is not None and not self.static_shapes:
            self._pools[()] = self._compile(ov_model)

    @classmethod
    def imported(
        cls, core: Any, blob: bytes, device: str, config: dict[str, Any], input_names: Sequence[str], outputs: Sequence[onnx.ValueInfoProto]
    ) -> CompiledSubgraph:
        """A subgraph from a compiled model ``export`` wrote (an EPContext blob), not compiled again."""
        compiled = cls(core, None, device, config, input_names, outputs, False)
        compiled._pools[()] = compiled._ports(core.import_model(io.BytesIO(blob), device, config))
        return compiled

    def export(self) -> bytes | None:
        """The compiled model as OpenVINO serializes it; None when it is compiled per input shape."""
        entry = self._pools.get(())
        if entry is None:
            return None
        stream = io.BytesIO()
        entry[0].compiled_model.export_model(stream)
        return stream.getvalue()

    @property
    def compiled_shapes(self) -> list[tuple]:
        """The input-shape combinations compiled so far (``[()]``: one compile for every shape)."""
        return list(self._pools)

    def __call__(self, *values: np.ndarray) -> tuple:
        """The subgraph's outputs for ``values``."""
        arrays = [_contiguous(v) for v in values]
        key = tuple(a.shape for a in arrays) if self.static_shapes else ()
        entry = self._pools.get(key)
        if entry is None:
            entry = self._compile_for(key)
        pool, feed_order, output_order = entry
        result = pool.infer([arrays[i] for i in feed_order])
        outputs = []
        for position, dtype in zip(output_order, self.output_dtypes):
            array = np.asarray(result[position])
            outputs.append(array if array.dtype == dtype else array.astype(dtype))
        return tuple(outputs)

    def _compile_for(self, shapes: tuple) -> tuple[RequestPool, list[int], list[int]]:
        """Reshape a copy of the model to ``shapes`` and compile it, once per shape combination."""
        with self._lock:
            entry = self._pools.get(shapes)
            if entry is None:
                model = self.ov_model.clone()
                model.reshape({name: list(shape) for name, shape in zip(self.input_names, shapes)})
                entry = self._pools[shapes] = self._compile(model)
        return entry

    def _compile(self, model: Any) -> tuple[RequestPool, list[int], list[int]]:
        """Compile ``model``; returns its request pool, the subgraph input that feeds each of its
        input ports, and the output port of each subgraph output."""
        return self._ports(self.core.compile_model(model, self.device, self.config))

    def _ports(self, compiled: Any) -> tuple[RequestPool, list[int], list[int]]:
        port_of_input = [_position(compiled.inputs, name) for name in self.input_names]
        feed_order = [port_of_input.index(port) for port in range(len(compiled.inputs))]
        output_order = [_position(compiled.outputs, name) for name in self.output_names]
        return RequestPool(compiled), feed_order, output_order


def _contiguous(value: Any) -> np.ndarray:
    """``value`` as a C-contiguous array (0-d arrays stay 0-d, unlike ``np.ascontiguousarray``)."""
    array = np.asarray(value)
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _position(ports: Sequence[Any], name: str) -> int:
    """The index of the port carrying tensor ``name``."""
    for index, port in enumerate(ports):
        if name in port.get_names():
            return index
    raise ValueError(f"OpenVINO's compiled model has no port for '{name}'")
