"""Session and run options, with onnxruntime's names and defaults."""

from __future__ import annotations

import enum

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


class SessionOptions:
    """Options fixed at session creation, with onnxruntime's names.

    Used: ``graph_optimization_level``, ``execution_mode``, ``intra_op_num_threads`` (the
    BLAS pool's threads while the session runs; 0: the physical cores, as in onnxruntime), ``inter_op_num_threads`` (parallel mode), ``optimized_model_filepath``,
    ``enable_profiling`` and ``profile_file_prefix``, and the config entries
    ``session.disable_cpu_ep_fallback``, ``optimization.disable_rules``,
    ``session.external_data_dir``, ``session.run_timeout_ms`` and ``session.max_tensor_bytes``
    (see docs/reliability.md). The logging and
    memory-arena fields are accepted so onnxruntime code runs unchanged; onnxmux logs through
    the standard ``logging`` module (logger ``onnxmux``) and leaves memory to numpy.
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
        self._config: dict[str, str] = {}
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
        from onnxmux.core.errors import InvalidArgument

        if key not in self._config:
            raise InvalidArgument(f"session config entry '{key}' is not set")
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


class RunOptions:
    """Options of one ``run`` call: ``terminate`` stops a run in progress; the others are
    accepted so onnxruntime code runs unchanged."""

    def __init__(self) -> None:
        self.log_severity_level = 2
        self.log_verbosity_level = 0
        self.logid = ""
        self.run_tag = ""
        self.terminate = False
        self.only_execute_path_to_fetches = False
