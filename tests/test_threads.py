"""BLAS threads follow intra_op_num_threads only while a session runs; the caller's setting is kept."""

from __future__ import annotations

import os

import numpy as np
import threadpoolctl
from onnx import TensorProto

import onnxmux
from onnxmux.core.threads import BlasThreads, physical_cores
from tests.helpers import single_node_model


def _blas_threads() -> set[int]:
    """The thread counts of every BLAS library loaded (OpenMP runtimes that torch or LightGBM load are not BLAS)."""
    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}


def test_default_is_the_physical_core_count() -> None:
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    assert BlasThreads(0).threads == physical_cores()
    assert BlasThreads(3).threads == 3


def test_count_applies_inside_the_call_and_the_callers_count_comes_back() -> None:
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        inside = BlasThreads(1)(_blas_threads)
        assert inside == {1}
        assert _blas_threads() == before


def test_a_one_thread_session_leaves_the_process_setting_alone() -> None:
    model = single_node_model("MatMul", [("a", TensorProto.FLOAT, [4, 4]), ("b", TensorProto.FLOAT, [4, 4])], [("y", TensorProto.FLOAT, [4, 4])])
    options = onnxmux.SessionOptions()
    options.intra_op_num_threads = 1
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        session = onnxmux.InferenceSession(model.SerializeToString(), options)
        a = np.eye(4, dtype=np.float32)
        np.testing.assert_array_equal(session.run(None, {"a": a, "b": a})[0], a)
        assert _blas_threads() == before
