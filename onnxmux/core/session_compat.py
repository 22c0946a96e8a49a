"""The parts of onnxruntime's ``InferenceSession`` API built on the core session: IOBinding, the
run variants, provider changes and fallback, graph-assignment and memory information.

``InferenceSession`` inherits them from ``SessionCompat``, so session.py keeps only the core.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

from onnxmux.core.devices import CPU
from onnxmux.core.iobinding import IOBinding, run_placed
from onnxmux.core.ortvalue import OrtValue


class SessionCompat:
    """onnxruntime's session methods beyond ``run``; mixed into ``InferenceSession``."""

    def io_binding(self) -> IOBinding:
        """A new IOBinding for this session."""
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: IOBinding, run_options: Any = None) -> None:
        """Run on the binding's inputs; its outputs are then read with ``iobinding.get_outputs()``."""
        iobinding._run()

    def run_with_ort_values(
        self, output_names: Sequence[str] | None, input_dict_ort_values: dict[str, OrtValue], run_options: Any = None
    ) -> list[OrtValue]:
        """Run on OrtValues (on any device); returns the outputs as host OrtValues."""
        names = list(output_names) if output_names else [o.name for o in self.get_outputs()]
        return run_placed(self, input_dict_ort_values, {name: CPU for name in names})

    def run_async(
        self,
        output_names: Sequence[str] | None,
        input_feed: dict[str, Any],
        callback: Callable[[list, Any, str], None],
        user_data: Any,
        run_options: Any = None,
    ) -> None:
        """Run on a worker thread; ``callback(results, user_data, error)`` gets the outputs and an
        empty string, or an empty list and the error's text, as onnxruntime's does."""

        def work() -> None:
            try:
                results, error = self.run(output_names, input_feed, run_options), ""
            except Exception as exc:
                results, error = [], str(exc)
            callback(results, user_data, error)

        threading.Thread(target=work, name="onnxmux-run-async", daemon=True).start()
