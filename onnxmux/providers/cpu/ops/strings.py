"""String operators: StringNormalizer, StringConcat, StringSplit, RegexFullMatch and
TfIdfVectorizer (which also accepts integer token ids).

String tensors are numpy object arrays of ``str``. Case changes and stop-word matching use
Python's ``str`` methods (full Unicode case mapping), so they never depend on the machine's
locales; the ``locale`` attribute is therefore ignored.
"""

from __future__ import annotations

import re2
from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.registry import op

_CASE_CHANGES = {"NONE": None, "LOWER": str.lower, "UPPER": str.upper}


@op("StringNormalizer", 10)
def string_normalizer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """X ([C] or [1, C]) without its stop words, then lower- or upper-cased."""
    action = ctx.attr("case_change_action", "NONE")
    if action not in _CASE_CHANGES:
        raise ctx.error(f"unknown case_change_action '{action}'")
    change_case = _CASE_CHANGES[action]
    case_sensitive = bool(ctx.attr("is_case_sensitive", 0))
    fold = (lambda s: s) if case_sensitive else str.casefold
    stopwords = frozenset(fold(w) for w in ctx.attr("stopwords", []))

    def run(x):
        if x.ndim not in (1, 2) or (x.ndim == 2 and x.shape[0] != 1):
            raise ValueError(f"StringNormalizer takes a [C] or [1, C] tensor, got shape {x.shape}")
        kept = [s for s in x.ravel().tolist() if fold(s) not in stopwords]
        if change_case is not None:
            kept = [change_case(s) for s in kept]
        out = np.array(kept or [""], dtype=object)
        return out.reshape(1, -1) if x.ndim == 2 else out

    return run


@op("StringConcat", 20)
def string_concat(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Element-wise X + Y with broadcasting."""

    def run(x, y):
        return np.asarray(np.add(x, y, dtype=object), dtype=object)

    return run


@op("StringSplit", 20)
def string_split(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Each string split on delimiter (runs of whitespace when empty), padded with "" to the
    longest split, and the number of pieces of each (none for an empty string)."""
    delimiter = ctx.attr("delimiter", "") or None
    maxsplit = ctx.attr("maxsplit", -1)
    if maxsplit is None or maxsplit < 0:
        maxsplit = -1

    def run(x):
        pieces = [s.split(delimiter, maxsplit) if s else [] for s in x.ravel().tolist()]
        counts = np.array([len(p) for p in pieces], dtype=np.int64)
        width = int(counts.max()) if counts.size else 0
        out = np.full((counts.size, width), "", dtype=object)
        out[np.arange(width) < counts[:, None]] = [piece for p in pieces for piece in p]
        return out.reshape(x.shape + (width,)), counts.reshape(x.shape)

    return run


@op("RegexFullMatch", 20)
def regex_full_match(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Whether each string matches the RE2 pattern in full, with RE2 itself: linear time, so no
    pattern can make a run hang; a pattern RE2 refuses is an InvalidGraph."""
    try:
        pattern = re2.compile(ctx.attr("pattern"))
    except re2.error as err:
        raise ctx.error(f"invalid pattern (RE2 refuses it): {err}") from None

    def run(x):
        matches = [pattern.fullmatch(s) is not None for s in x.ravel().tolist()]
        return np.array(matches, dtype=bool).reshape(x.shape)

    return run


_TFIDF_MODES = ("TF", "IDF", "TFIDF")


class _NgramPool:
    """The pool's n-grams as sorted integer codes, each with its output column.

    Pool tokens get ids 0..V-1; an n-gram's code is the base-(V+1) number whose digits are
    its token ids + 1, so codes of different lengths never collide.
    """

    def __init__(self, ctx: NodeContext, pool: np.ndarray, starts: list[int], lengths: range, columns: np.ndarray):
        self.vocabulary = np.unique(pool)
        self.base = self.vocabulary.size + 1
        if float(self.base) ** (lengths.stop - 1) >= 2.0**62:
            raise ctx.error("the pool vocabulary is too large for n-grams of this length")
        digits = np.searchsorted(self.vocabulary, pool) + 1
        bounds = starts + [pool.size]
        codes, slots = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        first_slot = 0
        for n, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]), start=1):
            if hi < lo or (hi - lo) % n:
                raise ctx.error(f"ngram_counts does not delimit whole {n}-grams in the pool")
            grams = digits[lo:hi].reshape(-1, n)
            if n in lengths:
                codes.append(grams @ self.base ** np.arange(n - 1, -1, -1, dtype=np.int64))
                slots.append(first_slot + np.arange(grams.shape[0]))
            first_slot += grams.shape[0]
        if first_slot != columns.size:
            raise ctx.error("ngram_counts and the pool do not give one n-gram per ngram_index")
        codes_flat = np.concatenate(codes)
        order = np.argsort(codes_flat, kind="stable")
        self.codes = codes_flat[order]
        self.column = columns[np.concatenate(slots)[order]]
        self.lengths = range(lengths.start, min(lengths.stop, len(starts) + 1))

    def token_ids(self, x: np.ndarray) -> np.ndarray:
        """Vocabulary id of each token, -1 for tokens outside the pool."""
        probe = x.astype(str) if x.dtype == object else x
        at = np.minimum(np.searchsorted(self.vocabulary, probe), self.vocabulary.size - 1)
        return np.where(self.vocabulary[at] == probe, at, -1)

    def count(self, x: np.ndarray, max_skip: int, width: int) -> np.ndarray:
        """(N, width) occurrences of the pool's n-grams in each row of tokens, all skips counted."""
        if self.codes.size == 0 or x.shape[1] == 0:
            return np.zeros((x.shape[0], width), dtype=np.float32)
        ids = self.token_ids(x)
        n_rows, length = ids.shape
        found_rows, found_columns = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
        for n in self.lengths:
            for step in range(1, max_skip + 2 if n > 1 else 2):
                windows = length - (n - 1) * step
                if windows <= 0:
                    break
                code = np.zeros((n_rows, windows), dtype=np.int64)
                valid = np.ones((n_rows, windows), dtype=bool)
                for k in range(n):
                    digit = ids[:, k * step : k * step + windows]
                    valid &= digit >= 0
                    code = code * self.base + digit + 1
                at = np.minimum(np.searchsorted(self.codes, code), self.codes.size - 1)
                r, c = np.nonzero(valid & (self.codes[at] == code))
                found_rows.append(r)
                found_columns.append(self.column[at[r, c]])
        flat = np.concatenate(found_rows) * width + np.concatenate(found_columns)
        return np.bincount(flat, minlength=n_rows * width).reshape(n_rows, width).astype(np.float32)


@op("TfIdfVectorizer", 9)
def tfidf_vectorizer(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Counts of the pool's n-grams (with up to max_skip_count skips) in each row of X,
    weighted per mode: TF counts, IDF 0/1 presence times weights, TFIDF counts times weights."""
    mode = ctx.attr("mode")
    if mode not in _TFIDF_MODES:
        raise ctx.error(f"unknown mode '{mode}'")
    min_n, max_n = ctx.attr("min_gram_length"), ctx.attr("max_gram_length")
    max_skip = ctx.attr("max_skip_count")
    if not 1 <= min_n <= max_n or max_skip < 0:
        raise ctx.error("need 1 <= min_gram_length <= max_gram_length and max_skip_count >= 0")
    has_ints, has_strings = "pool_int64s" in ctx.attrs, "pool_strings" in ctx.attrs
    if has_ints == has_strings:
        raise ctx.error("exactly one of pool_int64s and pool_strings must be set")
    pool = np.asarray(ctx.attr("pool_int64s" if has_ints else "pool_strings"), dtype=np.int64 if has_ints else str)
    columns = np.asarray(ctx.attr("ngram_indexes"), dtype=np.int64)
    weights = np.asarray(ctx.attr("weights", np.ones(columns.size)), dtype=np.float32)
    if columns.size == 0 or weights.size != columns.size or columns.min() < 0:
        raise ctx.error("ngram_indexes must be non-negative with one weight per n-gram")
    width = int(columns.max()) + 1
    grams = _NgramPool(ctx, pool, [int(s) for s in ctx.attr("ngram_counts")], range(min_n, max_n + 1), columns)
    scale = np.zeros(width, dtype=np.float32)
    scale[columns] = weights

    def run(x):
        counts = grams.count(x.reshape(1, -1) if x.ndim == 1 else x, max_skip, width)
        if mode == "IDF":
            counts = np.minimum(counts, 1.0)
        if mode != "TF":
            counts = counts * scale
        return counts.reshape(width) if x.ndim == 1 else counts

    return run
