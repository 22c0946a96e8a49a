"""Session and run options, with onnxruntime's names and defaults."""

from __future__ import annotations

import enum
from typing import Any, Sequence

from onnxmux.core.errors import InvalidArgument, NotImplementedFailure

from onnxmux.core.custom_ops import CustomOpScope


class GraphOptimizationLevel(enum.IntEnum):
    """How much the optimizer rewrites the graph before partitioning."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    """Sequential execution, or independent branches run concurrently."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    """onnxruntime's node ordering; onnxmux runs nodes in topological order whatever is chosen."""

    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


class _Sealed(type):
    """Instances refuse new attributes once built, so a misspelt option raises AttributeError as in onnxruntime."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        object.__setattr__(instance, "_sealed", True)
        return instance


class _Options(metaclass=_Sealed):
    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_sealed", False) and not name.startswith("_") and not hasattr(self, name):
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


class SessionOptions(_Options):
    """Options fixed at session creation, with onnxruntime's names.

    Used: ``graph_optimization_level``, ``execution_mode``, ``intra_op_num_threads`` (the
    BLAS pool's threads while the session runs; 0: the physical cores, as in onnxruntime), ``inter_op_num_threads`` (parallel mode), ``optimized_model_filepath``,
    ``enable_profiling`` and ``profile_file_prefix``, and the config entries
    ``session.disable_cpu_ep_fallback``, ``optimization.disable_rules``,
    ``session.external_data_dir``, ``session.run_timeout_ms`` and ``session.max_tensor_bytes``
    (see docs/reliability.md). The logging and
    memory-arena fields are accepted so onnxruntime code runs unchanged; onnxmux logs through
    the standard ``logging`` module (logger ``onnxmux``) and leaves memory to numpy. The
    model-changing methods (free dimension overrides, initializers) act at load; see
    ``model_options.py`` and docs/compat.md.
    """

    def __init__(self) -> None:
        self.graph_optimization_level = GraphOptimizationLevel.ORT_ENABLE_ALL
        self.execution_mode = ExecutionMode.ORT_SEQUENTIAL
        self.intra_op_num_threads = 0
        self.inter_op_num_threads = 0
        self.optimized_model_filepath = ""
        self.enable_profiling = False
        self.profile_file_prefix = "onnxmux_profile"
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.enable_cpu_mem_arena = True
        self.enable_mem_pattern = True
        self.enable_mem_reuse = True
        self.use_deterministic_compute = False
        self.execution_order = ExecutionOrder.DEFAULT
        self.use_per_session_threads = True
        self._config: dict[str, str] = {}
        #: Load-time model changes, applied by ``model_options.adjust_model``.
        self._dimension_overrides: dict[tuple[str, str], int] = {}
        self._initializers: dict[str, Any] = {}
        self._files_in_memory: dict[str, bytes] = {}
        #: The user's own optimizer rules, applied after the built-in ones (see docs/optimizer.md).
        self.optimizer_rules: list = []
        #: Custom operators for sessions made with these options (see docs/custom_ops.md).
        self.custom_ops = CustomOpScope("in these session options")

    def add_optimizer_rule(self, rule: object) -> None:
        """Add a graph rewrite rule (an ``onnxmux.optimizer.Rule``) to run at session creation."""
        self.optimizer_rules.append(rule)

    def register_custom_ops(self, *ops: object) -> None:
        """Let sessions made with these options run these ``onnxmux.CustomOp``s (lists are accepted)."""
        self.custom_ops.add(ops)

    def add_session_config_entry(self, key: str, value: str) -> None:
        """Set a free-form configuration entry (``session.*``, ``optimization.*``)."""
        self._config[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        """A configuration entry's value; raises InvalidArgument when it was never set."""
        if key not in self._config:
            raise InvalidArgument(
                f"session config entry '{key}' is not set. SessionOptions does not have configuration with key: {key}"
            )
        return self._config[key]

    @property
    def external_data_dir(self) -> str:
        """The folder a model given as bytes reads its external data from (``session.external_data_dir``)."""
        return self.config("session.external_data_dir")

    @external_data_dir.setter
    def external_data_dir(self, folder: str) -> None:
        self.add_session_config_entry("session.external_data_dir", folder)

    def config(self, key: str, default: str = "") -> str:
        """A configuration entry, or ``default``."""
        return self._config.get(key, default)

    def config_entries(self) -> dict[str, str]:
        """A copy of every configuration entry set."""
        return dict(self._config)

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        """Fix the symbolic input dimension ``dim_name`` to ``dim_value`` before shape inference."""
        self._dimension_overrides[("name", str(dim_name))] = _dimension(dim_name, dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        """Fix the input dimensions whose denotation is ``dim_denotation`` (e.g. ``DATA_BATCH``)."""
        self._dimension_overrides[("denotation", str(dim_denotation))] = _dimension(dim_denotation, dim_value)

    def add_initializer(self, name: str, val: Any) -> None:
        """Use the OrtValue ``val`` for the model's initializer ``name``."""
        self._initializers[str(name)] = val

    def add_external_initializers(self, names: Sequence[str], values: Sequence[Any]) -> None:
        """Use these OrtValues for the model's (external-data) initializers of these names."""
        if len(names) != len(values):
            raise InvalidArgument("add_external_initializers: names and values must have the same length")
        for name, value in zip(names, values):
            self.add_initializer(name, value)

    def add_external_initializers_from_files_in_memory(
        self, file_names: Sequence[str], buffers: Sequence[Any], lengths: Sequence[int] | None = None
    ) -> None:
        """Read the external-data files of these names from memory instead of the disk."""
        lengths = list(lengths) if lengths is not None else [None] * len(buffers)
        if not len(file_names) == len(buffers) == len(lengths):
            raise InvalidArgument("add_external_initializers_from_files_in_memory: the lists must have the same length")
        for name, buffer, length in zip(file_names, buffers, lengths):
            data = memoryview(buffer).cast("B").tobytes()
            self._files_in_memory[str(name)] = data if length is None else data[: int(length)]

    def register_custom_ops_library(self, library_path: str) -> None:
        """Refused: onnxmux loads no native operator libraries; custom operators are written in Python."""
        raise NotImplementedFailure(
            f"cannot load '{library_path}': onnxmux loads no native custom-op libraries. "
            "Write the operator in Python instead (onnxmux.register_custom_op, see docs/custom_ops.md)"
        )


class RunOptions(_Options):
    """Options of one ``run`` call: ``terminate`` stops a run in progress; the others are
    accepted so onnxruntime code runs unchanged."""

    def __init__(self) -> None:
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.run_tag = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False
        self._config: dict[str, str] = {}

    def add_run_config_entry(self, key: str, value: str) -> None:
        """Set a free-form run configuration entry."""
        self._config[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        """A run configuration entry; InvalidArgument when it was never set."""
        if key not in self._config:
            raise InvalidArgument(f"run config entry '{key}' is not set. RunOptions does not have configuration with key: {key}")
        return self._config[key]


def _dimension(name: str, value: Any) -> int:
    if not isinstance(value, (int,)) or isinstance(value, bool) or value < 0:
        raise InvalidArgument(f"free dimension override '{name}': the value must be a non-negative int, got {value!r}")
    return int(value)
