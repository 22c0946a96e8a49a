"""Signal processing: DFT, STFT, the Hann/Hamming/Blackman windows and MelWeightMatrix."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from onnxmux.core.types import numpy_dtype
from onnxmux.providers.cpu.registry import op

_WINDOW_TYPES = frozenset(
    np.dtype(t)
    for t in (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
              np.float16, np.float32, np.float64)
) | {numpy_dtype(16)}  # bfloat16


def _output_dtype(ctx: Any) -> np.dtype:
    """The ``output_datatype`` attribute as a numpy dtype (default float)."""
    code = ctx.attr("output_datatype", 1)
    try:
        dtype = numpy_dtype(code)
    except (TypeError, ValueError):
        dtype = None
    if dtype not in _WINDOW_TYPES:
        raise ctx.error(f"unsupported output_datatype {code}")
    return dtype


def _as_complex(xp: Any, x: Any) -> Any:
    """A [..., 1] (real) or [..., 2] (real, imaginary) tensor as a complex array without the last axis."""
    wide = x.dtype == np.float64
    parts = x.astype(np.float64 if wide else np.float32)
    complex_type = np.complex128 if wide else np.complex64
    if x.shape[-1] == 1:
        return parts[..., 0].astype(complex_type)
    if x.shape[-1] == 2:
        return (parts[..., 0] + 1j * parts[..., 1]).astype(complex_type)
    raise ValueError(f"the last dimension must be 1 (real) or 2 (complex), got {x.shape[-1]}")


def _as_pairs(xp: Any, z: Any, dtype: np.dtype) -> Any:
    """A complex array as a [..., 2] tensor of ``dtype``."""
    return xp.stack([z.real, z.imag], axis=-1).astype(dtype)


# --- DFT


def _dft(xp: Any, x: Any, length: Any, axis: int, inverse: bool, onesided: bool) -> Any:
    """The DFT of a [..., 1|2] tensor along ``axis`` (an axis of ``x``, not its last)."""
    rank = x.ndim
    if not -rank <= axis <= rank - 2 or axis == -1:
        raise ValueError(f"axis {axis} out of range for a rank-{rank} input")
    axis %= rank
    z = _as_complex(xp, x)
    n = None if length is None else int(length)
    if onesided and inverse:
        n = 2 * (z.shape[axis] - 1) if n is None else n
        y = xp.fft.irfft(z, n=n, axis=axis)[..., None]
        return y.astype(x.dtype)
    if inverse:
        y = xp.fft.ifft(z, n=n, axis=axis)
    else:
        y = xp.fft.fft(z, n=n, axis=axis)
        if onesided:
            y = xp.take(y, xp.arange(y.shape[axis] // 2 + 1), axis=axis)
    return _as_pairs(xp, y, x.dtype)


def _dft_flags(ctx: Any) -> tuple[bool, bool]:
    inverse, onesided = ctx.attr("inverse", 0), ctx.attr("onesided", 0)
    if inverse not in (0, 1) or onesided not in (0, 1):
        raise ctx.error("inverse and onesided must be 0 or 1")
    return bool(inverse), bool(onesided)


@op("DFT", 17)
def dft_17(ctx: Any, xp: Any) -> Callable[..., Any]:
    """DFT-17: (inverse) discrete Fourier transform along the ``axis`` attribute (default 1)."""
    inverse, onesided = _dft_flags(ctx)
    axis = ctx.attr("axis", 1)

    def run(x, dft_length=None):
        return _dft(xp, x, dft_length, axis, inverse, onesided)

    return run


@op("DFT", 20)
def dft_20(ctx: Any, xp: Any) -> Callable[..., Any]:
    """DFT-20: (inverse) discrete Fourier transform along the ``axis`` input (default -2)."""
    inverse, onesided = _dft_flags(ctx)

    def run(x, dft_length=None, axis=None):
        return _dft(xp, x, dft_length, -2 if axis is None else int(axis), inverse, onesided)

    return run


@op("STFT", 17)
def stft(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Short-time Fourier transform of [batch, length, 1|2] signals: framed, windowed DFTs."""
    onesided = ctx.attr("onesided", 1)
    if onesided not in (0, 1):
        raise ctx.error("onesided must be 0 or 1")

    def run(signal, frame_step, window=None, frame_length=None):
        z = _as_complex(xp, signal)
        if frame_length is not None:
            size = int(frame_length)
            if window is not None and window.shape[0] != size:
                raise ValueError(f"window length {window.shape[0]} differs from frame_length {size}")
        else:
            size = z.shape[1] if window is None else window.shape[0]
        step = int(frame_step)
        count = (z.shape[1] - size) // step + 1
        if size < 1 or step < 1 or count < 1:
            raise ValueError(f"cannot frame a signal of length {z.shape[1]} by {size} every {step}")
        starts = xp.arange(count)[:, None] * step
        frames = z[:, starts + xp.arange(size)]
        if window is not None:
            frames = frames * window.astype(frames.real.dtype)
        spectrum = xp.fft.fft(frames, axis=-1)
        if onesided:
            spectrum = spectrum[..., : size // 2 + 1]
        return _as_pairs(xp, spectrum, signal.dtype)

    return run


# --- windows


def _window_kernel(ctx: Any, xp: Any, coefficients: tuple[float, ...]) -> Callable[..., Any]:
    """A generalized cosine window sum_k (-1)^k a_k cos(2 pi k n / N)."""
    dtype = _output_dtype(ctx)
    periodic = bool(ctx.attr("periodic", 1))

    def run(size):
        n = int(size)
        span = n if periodic else n - 1
        phase = 2 * np.pi * xp.arange(n, dtype=np.float64) / max(span, 1)
        window = sum((-1) ** k * a * xp.cos(k * phase) for k, a in enumerate(coefficients))
        return xp.asarray(window).astype(dtype)

    return run


@op("HannWindow", 17)
def hann_window(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Hann window 0.5 - 0.5 cos(2 pi n / N), periodic or symmetric."""
    return _window_kernel(ctx, xp, (0.5, 0.5))


@op("HammingWindow", 17)
def hamming_window(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Hamming window 25/46 - 21/46 cos(2 pi n / N), periodic or symmetric."""
    return _window_kernel(ctx, xp, (25 / 46, 21 / 46))


@op("BlackmanWindow", 17)
def blackman_window(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Blackman window 0.42 - 0.5 cos(2 pi n / N) + 0.08 cos(4 pi n / N), periodic or symmetric."""
    return _window_kernel(ctx, xp, (0.42, 0.5, 0.08))


# --- mel filter bank


def _hz_to_mel(hz: Any) -> Any:
    return 2595 * np.log10(1 + hz / 700)


def _mel_to_hz(mel: Any) -> Any:
    return 700 * (10 ** (mel / 2595) - 1)


@op("MelWeightMatrix", 17)
def mel_weight_matrix(ctx: Any, xp: Any) -> Callable[..., Any]:
    """Triangular mel filter bank of shape [dft_length // 2 + 1, num_mel_bins], peaks of 1."""
    dtype = _output_dtype(ctx)

    def run(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz):
        bins, length, rate = int(num_mel_bins), int(dft_length), int(sample_rate)
        low, high = _hz_to_mel(float(lower_edge_hertz)), _hz_to_mel(float(upper_edge_hertz))
        # bins + 2 band edges evenly spaced in mel, (high - low) / (bins + 2) apart, as spectrogram bins
        edges_hz = _mel_to_hz(low + np.arange(bins + 2) * (high - low) / (bins + 2))
        edges = np.floor((length + 1) * edges_hz / rate).astype(np.int64)
        lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
        k = np.arange(length // 2 + 1)[:, None]
        rising = np.where(center > lower, (k - lower) / np.maximum(center - lower, 1), 1.0)
        falling = (upper - k) / np.maximum(upper - center, 1)
        weights = np.where((k >= lower) & (k <= center), rising, 0.0)
        weights = np.where((k > center) & (k < upper), falling, weights)
        return xp.asarray(weights.astype(dtype))

    return run
