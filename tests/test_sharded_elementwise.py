"""Element-wise work sharded across a session's intra-op threads (``sharded.chunks``): Gelu and the
fused activations give the same bits as on one thread, shards run on the workers, errors propagate."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from onnx import TensorProto

import onnxmux
from onnxmux.core.threads import IntraOpThreads
from onnxmux.providers.cpu import sharded
from onnxmux.providers.cpu.ops import pointwise
from onnxmux.providers.cpu.ops.fused import ACTIVATIONS
from tests.helpers import single_node_model

#: Two shards of whole Gelu chunks and a tail that is no multiple of the alignment.
SIZE = 2 * max(sharded.SHARD_ELEMENTS, pointwise.GELU_CHUNK) + 1234


class CountingThreads(IntraOpThreads):
    """Two intra-op threads that count the shards they are handed."""

    def __init__(self) -> None:
        super().__init__(2)
        self.shards = 0

    def run_shards(self, shards) -> None:
        self.shards += len(shards)
        super().run_shards(shards)


def _values(shape: tuple, scale: float = 4.0) -> np.ndarray:
    return (np.random.default_rng(7).standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_sharded_gelu_gives_the_one_thread_bits(approximate) -> None:
    x = _values((SIZE,))
    one, two = IntraOpThreads(1), CountingThreads()
    expected = one(pointwise.gelu, np, x, approximate)
    assert two(pointwise.gelu, np, x, approximate).tobytes() == expected.tobytes()
    assert two(pointwise.gelu_inplace, np, x.copy(), approximate).tobytes() == expected.tobytes()
    assert two.shards >= 4


def test_sharded_gelu_with_a_bias_gives_the_one_thread_bits() -> None:
    x = _values((SIZE // 1000, 1000))
    bias = _values((1000,))
    one, two = IntraOpThreads(1), CountingThreads()
    expected = one(pointwise.gelu_inplace, np, x.copy(), "none", bias)
    assert two(pointwise.gelu_inplace, np, x.copy(), "none", bias).tobytes() == expected.tobytes()
    assert two.shards >= 2


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_sharded_activation_gives_the_one_thread_bits(name, layout) -> None:
    apply, count = ACTIVATIONS[name]
    params = {"Clip": [-1.0, 2.0]}.get(name, [0.3, 0.6][:count])
    y = _values((2, 48, 64, 64))
    view = {"contiguous": lambda a: a, "channels_last": lambda a: a.transpose(0, 2, 3, 1), "strided": lambda a: a[:, ::2]}[layout]
    expected = apply(np, view(y.copy()), params)
    y2 = y.copy()
    pool = CountingThreads()
    result = pool(lambda: sharded.in_place(np, view(y2), lambda part: apply(np, part, params)))
    np.testing.assert_array_equal(result, expected)
    assert result.tobytes() == expected.tobytes()
    assert (pool.shards >= 2) == (layout != "strided")  # a strided view has no flat view to cut


def test_a_session_on_two_threads_gives_the_one_thread_bits() -> None:
    model = single_node_model("Gelu", [("x", TensorProto.FLOAT, [4, SIZE // 4])], [("y", TensorProto.FLOAT, [4, SIZE // 4])], opset=20)
    x = _values((4, SIZE // 4))
    outputs = []
    for count in (1, 2):
        options = onnxmux.SessionOptions()
        options.intra_op_num_threads = count
        outputs.append(onnxmux.InferenceSession(model.SerializeToString(), options).run(None, {"x": x})[0])
    assert outputs[0].tobytes() == outputs[1].tobytes()


def test_chunks_cover_the_range_once_in_aligned_shards_on_the_workers() -> None:
    ranges: list[tuple[int, int, str]] = []

    def work(start: int, end: int) -> None:
        time.sleep(0.02)  # sleeping frees the CPU: the worker gets its turn even on a busy machine
        ranges.append((start, end, threading.current_thread().name))

    size = 8 * sharded.SHARD_ELEMENTS + 5
    IntraOpThreads(2)(sharded.chunks, np, size, work, 1000)
    spans = sorted((s, e) for s, e, _ in ranges)
    assert len(spans) >= 2 and spans[0][0] == 0 and spans[-1][1] == size
    assert all(e == s2 for (_, e), (s2, _) in zip(spans, spans[1:]))
    assert all(s % 1000 == 0 and e - s >= sharded.SHARD_ELEMENTS - 1000 for s, e in spans)
    assert any(name.startswith("onnxmux-intra-op") for *_, name in ranges)


def test_small_work_and_one_thread_run_whole_on_the_calling_thread() -> None:
    calls: list[tuple[int, int, str]] = []

    def work(start: int, end: int) -> None:
        calls.append((start, end, threading.current_thread().name))

    me = threading.current_thread().name
    IntraOpThreads(2)(sharded.chunks, np, 2 * sharded.SHARD_ELEMENTS - 1, work)
    IntraOpThreads(1)(sharded.chunks, np, 100 * sharded.SHARD_ELEMENTS, work)
    sharded.chunks(np, 100 * sharded.SHARD_ELEMENTS, work)  # outside a session
    assert calls == [(0, 2 * sharded.SHARD_ELEMENTS - 1, me), (0, 100 * sharded.SHARD_ELEMENTS, me), (0, 100 * sharded.SHARD_ELEMENTS, me)]


def test_an_error_in_a_shard_propagates_and_the_pool_stays_usable() -> None:
    pool = IntraOpThreads(2)

    def work(start: int, end: int) -> None:
        if start > 0:
            raise ValueError(f"shard at {start} failed")

    with pytest.raises(ValueError, match="shard at"):
        pool(sharded.chunks, np, 8 * sharded.SHARD_ELEMENTS, work)
    x = _values((SIZE,))
    assert pool(pointwise.gelu, np, x, "none").tobytes() == pointwise.gelu(np, x, "none").tobytes()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_in_place_on_one_thread_goes_by_cache_sized_chunks(name) -> None:
    apply, count = ACTIVATIONS[name]
    params = {"Clip": [-1.0, 2.0]}.get(name, [0.3, 0.6][:count])
    y = _values((3 * sharded.IN_PLACE_CHUNK + 777,))
    expected = apply(np, y.copy(), params)
    sizes = []

    def recording(part):
        sizes.append(part.size)
        return apply(np, part, params)

    result = sharded.in_place(np, y, recording)
    assert result is y and y.tobytes() == expected.tobytes()
    assert max(sizes) == sharded.IN_PLACE_CHUNK and sum(sizes) == y.size
