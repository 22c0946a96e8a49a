"""onnxruntime's device and memory descriptions: OrtDevice, OrtMemoryInfo and their enums.

onnxmux leaves memory to numpy and to each provider's arrays, so these describe where values
live (for IOBinding and ``get_input_memory_infos``) and accept arena settings without effect.
"""

from __future__ import annotations

import enum
from typing import Any

from onnxmux.core import devices
from onnxmux.core.devices import Device


class OrtMemType(enum.IntEnum):
    """Which memory of a provider a value uses."""

    CPU_INPUT = -2
    CPU_OUTPUT = -1
    CPU = -1
    DEFAULT = 0


class OrtAllocatorType(enum.IntEnum):
    """The allocator kind (onnxmux has no arena: reported, never used)."""

    INVALID = -1
    ORT_DEVICE_ALLOCATOR = 0
    ORT_ARENA_ALLOCATOR = 1


class OrtDeviceMemoryType(enum.IntEnum):
    """Device memory kind."""

    DEFAULT = 0
    HOST_ACCESSIBLE = 5


class OrtArenaCfg:
    """Arena settings, accepted for compatibility; onnxmux allocates through numpy and the providers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) == 1 and isinstance(args[0], dict):
            kwargs = {**args[0], **kwargs}
            args = ()
        names = ("max_mem", "arena_extend_strategy", "initial_chunk_size_bytes", "max_dead_bytes_per_chunk")
        self.__dict__.update({k: -1 for k in names}, **dict(zip(names, args)), **kwargs)


class OrtDevice:
    """A device as onnxruntime names it: type number, index, memory type, vendor."""

    CPU, GPU, FPGA, NPU = 0, 1, 2, 3

    def __init__(self, device: Device, mem_type: int = 0, vendor_id: int = 0) -> None:
        self._device = device
        self._mem_type = mem_type
        self._vendor_id = vendor_id

    @staticmethod
    def make(ort_device_name: str, device_id: int, vendor_id: int = -1) -> OrtDevice:
        """The device named ``ort_device_name`` (``cpu``, ``opencl``, ``cuda``...) with index ``device_id``."""
        return OrtDevice(devices.resolve(ort_device_name, device_id), vendor_id=max(vendor_id, 0))

    @staticmethod
    def cpu() -> int:
        """onnxruntime's number for the cpu device type."""
        return OrtDevice.CPU

    @staticmethod
    def cuda() -> int:
        """onnxruntime's number for a GPU device type."""
        return OrtDevice.GPU

    @staticmethod
    def default_memory() -> int:
        """onnxruntime's number for default device memory."""
        return 0

    def device_id(self) -> int:
        """The device index."""
        return self._device.id

    def device_type(self) -> int:
        """0 for the host, 1 (GPU) for any other device."""
        return OrtDevice.CPU if self._device.transfer is None else OrtDevice.GPU

    def device_mem_type(self) -> int:
        """The memory type (0: default)."""
        return self._mem_type

    def device_vendor_id(self) -> int:
        """The PCI vendor id, 0 when unknown."""
        return self._vendor_id

    def __repr__(self) -> str:
        return f"OrtDevice({self._device.name})"


class OrtMemoryInfo:
    """Where a session input or output lives: ``name`` (``Cpu``, ``Opencl``...), ``device_id``..."""

    def __init__(
        self,
        name: str,
        allocator_type: OrtAllocatorType = OrtAllocatorType.ORT_DEVICE_ALLOCATOR,
        device_id: int = 0,
        mem_type: OrtMemType = OrtMemType.DEFAULT,
    ) -> None:
        self.name = name
        self.allocator_type = allocator_type
        self.device_id = device_id
        self.mem_type = mem_type
        self.device_mem_type = OrtDeviceMemoryType.DEFAULT
        self.device_vendor_id = 0

    @classmethod
    def of_device(cls, device_name: str) -> OrtMemoryInfo:
        """The memory info of a device string such as ``cpu`` or ``opencl:0``."""
        kind, _, index = device_name.partition(":")
        return cls(kind.capitalize(), OrtAllocatorType.ORT_DEVICE_ALLOCATOR, int(index) if index.isdigit() else 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrtMemoryInfo) and (self.name, self.device_id, self.mem_type) == (
            other.name,
            other.device_id,
            other.mem_type,
        )

    def __hash__(self) -> int:
        return hash((self.name, self.device_id, self.mem_type))

    def __repr__(self) -> str:
        return f"OrtMemoryInfo(name={self.name!r}, device_id={self.device_id}, mem_type={self.mem_type.name})"
