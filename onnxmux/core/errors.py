"""The exception classes every onnxmux error derives from, so callers can catch them by kind.

They also form onnxruntime's hierarchy (``Fail``, ``InvalidArgument``, ``NoSuchFile``...,
re-exported by ``onnxmux.capi.onnxruntime_pybind11_state``), so ``except`` clauses written
for onnxruntime catch onnxmux's errors. Classes keep the Python built-in base a caller would
expect (``ValueError`` for a bad argument, ``RuntimeError`` for a failed run).
"""

from __future__ import annotations


class OnnxMuxError(Exception):
    """Base class of every error raised by onnxmux."""


class Fail(OnnxMuxError):
    """onnxruntime's generic failure (status FAIL); every onnxruntime-named error derives from it."""


class InvalidArgument(Fail, ValueError):
    """A caller-supplied value (feed, output name, option) is wrong."""


class InvalidGraph(Fail):
    """The model cannot be loaded: malformed file, bad graph, bad attribute, unsafe external data."""


class NoSuchFile(InvalidGraph, FileNotFoundError):
    """The model file (or a file it names) cannot be read."""


class InvalidProtobuf(InvalidGraph):
    """The model bytes are not a valid ONNX protobuf."""


class NoModel(Fail):
    """onnxruntime's NO_MODEL status; kept for ``except`` clauses, onnxmux does not raise it."""


class ModelLoaded(Fail):
    """onnxruntime's MODEL_LOADED status; kept for ``except`` clauses, onnxmux does not raise it."""


class EngineError(Fail):
    """onnxruntime's ENGINE_ERROR status; kept for ``except`` clauses, onnxmux does not raise it."""


class RuntimeException(Fail, RuntimeError):
    """onnxruntime's RUNTIME_EXCEPTION status: something failed while running."""


class NotImplementedFailure(Fail, NotImplementedError):
    """onnxruntime's NOT_IMPLEMENTED status (exported there as ``NotImplemented``)."""


class UnsupportedModel(Fail):
    """The model needs an IR version or opset newer than this runtime supports."""


class UnsupportedOperator(NotImplementedFailure):
    """No selected provider can run a node."""


class ProviderError(Fail):
    """An execution provider failed to load, initialise or compile."""


class EPFail(ProviderError):
    """A provider failed and no other provider could run its nodes."""


class RuntimeFailure(RuntimeException):
    """A kernel failed while running; the message names the node."""
