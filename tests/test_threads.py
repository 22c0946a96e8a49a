"""Intra-op threads: BLAS held at one thread while a session runs (the caller's setting kept), large
products sharded across the session's own threads."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import threadpoolctl
from onnx import TensorProto

import onnxmux
from onnxmux.core import threads
from onnxmux.core.threads import IntraOpThreads, physical_cores
from onnxmux.providers.cpu import sharded
from tests.helpers import single_node_model


def _blas_threads() -> set[int]:
    """The thread counts of every BLAS library loaded (OpenMP runtimes that torch or LightGBM load are not BLAS)."""
    return {lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"}


def test_default_is_the_physical_core_count() -> None:
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    assert IntraOpThreads(0).threads == physical_cores()
    assert IntraOpThreads(3).threads == 3


@pytest.mark.parametrize("count", [1, 2])
def test_blas_runs_one_thread_inside_the_call_and_the_callers_count_comes_back(count) -> None:
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        inside = IntraOpThreads(count)(lambda: (_blas_threads(), threads.current()))
        assert inside[0] == {1}
        assert (inside[1] is not None) == (count > 1)
        assert _blas_threads() == before and threads.current() is None


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


def test_shards_run_on_the_callers_and_the_workers_threads() -> None:
    pool = IntraOpThreads(2)
    ran: list[str] = []

    def shard() -> None:
        time.sleep(0.02)  # sleeping frees the CPU: the worker gets its turn even on a busy machine
        ran.append(threading.current_thread().name)

    pool.run_shards([shard] * 8)
    assert len(ran) == 8
    assert threading.current_thread().name in ran
    assert any(name.startswith("onnxmux-intra-op") for name in ran)


def test_a_failing_shard_raises_and_the_pool_stays_usable() -> None:
    pool = IntraOpThreads(2)

    def fail() -> None:
        raise ValueError("shard failed")

    with pytest.raises(ValueError, match="shard failed"):
        pool.run_shards([fail, fail, fail])
    done: list[int] = []
    pool.run_shards([lambda: done.append(1)] * 4)
    assert done == [1] * 4


@pytest.mark.parametrize(
    "a_shape,b_shape,dtype",
    [
        ((300, 200), (200, 500), np.float32),  # split along the columns
        ((700, 300), (300, 90), np.float64),  # along the rows
        ((4, 128, 64), (64, 256), np.float32),  # batched
        ((2, 1, 256, 64), (3, 64, 256), np.float32),  # broadcast batch axes
    ],
)
def test_sharded_matmul_equals_numpy(monkeypatch, a_shape, b_shape, dtype) -> None:
    monkeypatch.setattr(sharded, "SHARD_MACS", 1 << 12)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    calls: list[int] = []
    pool = IntraOpThreads(2)
    real = pool.run_shards
    monkeypatch.setattr(pool, "run_shards", lambda shards: (calls.append(len(shards)), real(shards)))
    got = pool(sharded.matmul, np, a, b)
    assert calls and calls[0] > 1  # the product was sharded
    np.testing.assert_allclose(got, np.matmul(a, b), rtol=1e-5, atol=1e-4)


def test_small_products_and_other_dtypes_are_not_sharded() -> None:
    pool = IntraOpThreads(2)
    a = np.ones((4, 4), np.float32)
    assert pool(sharded.matmul, np, a, a).tolist() == (a @ a).tolist()
    ints = np.ones((512, 512), np.int64)
    np.testing.assert_array_equal(pool(sharded.matmul, np, ints, ints), ints @ ints)


def test_a_two_thread_session_gives_the_one_thread_result() -> None:
    model = single_node_model("MatMul", [("a", TensorProto.FLOAT, [512, 256]), ("b", TensorProto.FLOAT, [256, 384])], [("y", TensorProto.FLOAT, [512, 384])])
    rng = np.random.default_rng(1)
    feeds = {"a": rng.standard_normal((512, 256)).astype(np.float32), "b": rng.standard_normal((256, 384)).astype(np.float32)}
    results = []
    for count in (1, 2):
        options = onnxmux.SessionOptions()
        options.intra_op_num_threads = count
        results.append(onnxmux.InferenceSession(model.SerializeToString(), options).run(None, feeds)[0])
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(results[0], feeds["a"] @ feeds["b"], rtol=1e-5, atol=1e-4)
