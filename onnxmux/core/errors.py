"""The exception classes every onnxmux error derives from, so callers can catch them by kind."""

from __future__ import annotations


class OnnxMuxError(Exception):
    """Base class of every error raised by onnxmux."""


class InvalidGraph(OnnxMuxError):
    """The model cannot be loaded: malformed file, bad graph, bad attribute, unsafe external data."""


class InvalidArgument(OnnxMuxError, ValueError):
    """A caller-supplied value (feed, output name, option) is wrong."""


class UnsupportedModel(OnnxMuxError):
    """The model needs an IR version or opset newer than this runtime supports."""


class UnsupportedOperator(OnnxMuxError, NotImplementedError):
    """No selected provider can run a node."""


class ProviderError(OnnxMuxError):
    """An execution provider failed to load, initialise or compile."""


class RuntimeFailure(OnnxMuxError, RuntimeError):
    """A kernel failed while running; the message names the node."""


class EPFail(ProviderError):
    """A provider failed and no other provider could run its nodes."""
