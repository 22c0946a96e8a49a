"""Tree ensembles of ai.onnx.ml: TreeEnsemble (opset 5), TreeEnsembleRegressor and
TreeEnsembleClassifier (opsets 1 and 3).

Every ensemble is flattened into one node table in which leaves are nodes that point to
themselves, then renumbered for traversal so that each branch's two children sit side by
side. Every (row, tree) walk starts at its tree's root and steps down one level per pass;
the walks that have reached a leaf are set aside in bulk as they accumulate. The weights of
the leaves reached are then summed per (row, target) through a dense (target, node) table,
or with bincount (and ufunc.at for MIN/MAX) when there are many targets.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxmux.core.context import NodeContext
from onnxmux.providers.cpu.ops.ml_linear import (
    ML,
    POST_TRANSFORM_NAMES,
    class_labels,
    post_transform,
)
from onnxmux.providers.cpu.registry import op

# Node comparisons, numbered as TreeEnsemble's nodes_modes numbers them; true branch when
# ``feature <op> threshold`` (or, for MEMBER, when the feature is one of the node's set).
_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)
_LEAF = -1
_LEGACY_MODES = {
    "BRANCH_LEQ": _LEQ,
    "BRANCH_LT": _LT,
    "BRANCH_GTE": _GTE,
    "BRANCH_GT": _GT,
    "BRANCH_EQ": _EQ,
    "BRANCH_NEQ": _NEQ,
    "LEAF": _LEAF,
}
_LEGACY_MODE_CODES = {name.encode(): code for name, code in _LEGACY_MODES.items()}
_UNKNOWN_MODE = -2
_UFUNC_NAMES = {
    _LEQ: "less_equal",
    _LT: "less",
    _GTE: "greater_equal",
    _GT: "greater",
    _EQ: "equal",
    _NEQ: "not_equal",
}
_AGGREGATES = ("AVERAGE", "SUM", "MIN", "MAX")


@dataclass(frozen=True)
class _Forest:
    """All trees of an ensemble as flat node arrays; leaves loop back to themselves.

    ``children[2 * node + taken]`` is the next node (``taken`` is 1 for the true branch).
    ``nan_true`` is the branch a NaN feature takes: the true one where the missing-value
    track says so, and at BRANCH_NEQ nodes, where NaN != threshold holds.
    A leaf's weights are ``weight[first[leaf]:first[leaf] + count[leaf]]`` going to the
    targets (or classes) in ``target``.
    """

    roots: np.ndarray
    children: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    mode: np.ndarray
    nan_true: np.ndarray
    members: np.ndarray | None
    depth: int
    first: np.ndarray
    count: np.ndarray
    target: np.ndarray
    weight: np.ndarray


def _build_forest(
    ctx: NodeContext,
    roots: np.ndarray,
    true_next: np.ndarray,
    false_next: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    mode: np.ndarray,
    nan_true: np.ndarray,
    members: np.ndarray | None,
    leaf_node: np.ndarray,
    leaf_target: np.ndarray,
    leaf_weight: np.ndarray,
) -> _Forest:
    """Validate the node table, make leaves self-loops and index the leaf weights by node."""
    n_nodes = mode.size
    is_leaf = mode == _LEAF
    nodes = np.arange(n_nodes)
    children = np.stack([np.where(is_leaf, nodes, false_next), np.where(is_leaf, nodes, true_next)], axis=1)
    children = children.ravel().astype(np.int64)
    for name, index in (("child", children), ("root", roots), ("leaf", leaf_node)):
        if index.size and (index.min() < 0 or index.max() >= n_nodes):
            raise ctx.error(f"a {name} index points outside the nodes")
    branch_features = feature[~is_leaf]
    if branch_features.size and branch_features.min() < 0:
        raise ctx.error("negative feature id")
    order = np.argsort(leaf_node, kind="stable")
    count = np.bincount(leaf_node, minlength=n_nodes)
    return _Forest(
        roots=roots.astype(np.int64),
        children=children,
        feature=np.where(is_leaf, 0, feature).astype(np.int64),
        threshold=threshold,
        mode=mode,
        nan_true=(nan_true != 0) | (mode == _NEQ),
        members=members,
        depth=_depth(ctx, children, is_leaf, roots),
        first=(np.cumsum(count) - count).astype(np.int64),
        count=count.astype(np.int64),
        target=leaf_target[order].astype(np.int64),
        weight=leaf_weight[order].astype(np.float64),
    )


def _depth(ctx: NodeContext, children: np.ndarray, is_leaf: np.ndarray, roots: np.ndarray) -> int:
    """The number of branch nodes on the longest root-to-leaf path."""
    seen = np.zeros(is_leaf.size, dtype=bool)
    seen[roots] = True
    frontier = np.flatnonzero(seen & ~is_leaf)
    depth = 0
    while frontier.size:
        depth += 1
        if depth > is_leaf.size:
            raise ctx.error("the trees contain a cycle")
        seen[:] = False
        seen[children[2 * frontier]] = True
        seen[children[2 * frontier + 1]] = True
        frontier = np.flatnonzero(seen & ~is_leaf)
    return depth


def _ints(ctx: NodeContext, name: str) -> np.ndarray:
    return ctx.array(name, np.int64)


def _same_length(ctx: NodeContext, prefix: str, arrays: dict[str, np.ndarray]) -> None:
    sizes = {a.size for a in arrays.values()}
    if len(sizes) > 1:
        detail = ", ".join(f"{name}={a.size}" for name, a in arrays.items())
        raise ctx.error(f"the {prefix}* attributes differ in length ({detail})")


def _missing_tracks(ctx: NodeContext, nodes: dict[str, np.ndarray]) -> np.ndarray:
    """Each node's missing-value track (0 when the attribute is absent), after checking that the
    node attributes, the tracks included, all have one entry per node."""
    tracks = _ints(ctx, "nodes_missing_value_tracks_true")
    if tracks.size:
        nodes["missing_value_tracks_true"] = tracks
    _same_length(ctx, "nodes_", nodes)
    return tracks if tracks.size else np.zeros(nodes["featureids"].size, np.int64)


def _membership_sets(ctx: NodeContext, mode: np.ndarray, dtype: np.dtype) -> np.ndarray | None:
    """(nodes, K) NaN-padded set of each BRANCH_MEMBER node, from NaN-delimited membership_values."""
    member_nodes = np.flatnonzero(mode == _MEMBER)
    if member_nodes.size == 0:
        return None
    values = np.asarray(ctx.attr("membership_values", np.zeros(0)), dtype=np.float64).ravel()
    cuts = np.flatnonzero(np.isnan(values))
    groups = [g[~np.isnan(g)] for g in np.split(values, cuts)]
    if len(groups) < member_nodes.size:
        raise ctx.error("membership_values holds fewer sets than there are BRANCH_MEMBER nodes")
    groups = groups[: member_nodes.size]
    members = np.full((mode.size, max(1, max(g.size for g in groups))), np.nan, dtype=dtype)
    for node, group in zip(member_nodes, groups):
        members[node, : group.size] = group
    return members


def _forest_v5(ctx: NodeContext) -> _Forest:
    """The forest of a TreeEnsemble node (interior nodes and leaves listed separately)."""
    modes = np.asarray(ctx.attr("nodes_modes"), dtype=np.int64).ravel()
    splits = np.asarray(ctx.attr("nodes_splits")).ravel()
    nodes = {
        "modes": modes,
        "splits": splits,
        "featureids": _ints(ctx, "nodes_featureids"),
        "truenodeids": _ints(ctx, "nodes_truenodeids"),
        "trueleafs": _ints(ctx, "nodes_trueleafs"),
        "falsenodeids": _ints(ctx, "nodes_falsenodeids"),
        "falseleafs": _ints(ctx, "nodes_falseleafs"),
    }
    tracks = _missing_tracks(ctx, nodes)
    leaf_weights = np.asarray(ctx.attr("leaf_weights")).ravel()
    leaf_targets = _ints(ctx, "leaf_targetids")
    _same_length(ctx, "leaf_", {"weights": leaf_weights, "targetids": leaf_targets})
    if modes.size and (modes.min() < _LEQ or modes.max() > _MEMBER):
        raise ctx.error("nodes_modes must be between 0 and 6")
    n, n_leaves = modes.size, leaf_weights.size
    leaf_pad = np.zeros(n_leaves, dtype=np.int64)
    true_next = np.where(nodes["trueleafs"] != 0, n + nodes["truenodeids"], nodes["truenodeids"])
    false_next = np.where(nodes["falseleafs"] != 0, n + nodes["falsenodeids"], nodes["falsenodeids"])
    mode = np.concatenate([modes, np.full(n_leaves, _LEAF)])
    return _build_forest(
        ctx,
        roots=_ints(ctx, "tree_roots"),
        true_next=np.concatenate([true_next, leaf_pad]),
        false_next=np.concatenate([false_next, leaf_pad]),
        feature=np.concatenate([nodes["featureids"], leaf_pad]),
        threshold=np.concatenate([splits, np.zeros(n_leaves, dtype=splits.dtype)]),
        mode=mode,
        nan_true=np.concatenate([tracks, leaf_pad]),
        members=_membership_sets(ctx, mode, splits.dtype),
        leaf_node=n + np.arange(n_leaves),
        leaf_target=leaf_targets,
        leaf_weight=leaf_weights,
    )


def _float_attr(ctx: NodeContext, name: str) -> np.ndarray:
    """``name_as_tensor`` (double) when given, else the float32 list attribute ``name``."""
    tensor = ctx.attr(f"{name}_as_tensor", None)
    if tensor is not None:
        return np.asarray(tensor, dtype=np.float64).ravel()
    return ctx.array(name, np.float32)


def _legacy_modes(ctx: NodeContext) -> np.ndarray:
    """nodes_modes as comparison numbers."""
    modes = ctx.utf8_strings("nodes_modes")
    codes = np.fromiter(map(_LEGACY_MODE_CODES.get, modes, itertools.repeat(_UNKNOWN_MODE)), np.int64, len(modes))
    if (codes == _UNKNOWN_MODE).any():
        unknown = {m.decode("utf-8") for m in modes} - set(_LEGACY_MODES)
        raise ctx.error(f"unknown nodes_modes {sorted(unknown)}")
    return codes


def _pair_index(ctx: NodeContext, trees: np.ndarray, ids: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``locate(trees, ids)``: the positions of (tree id, node id) pairs in the node table, found
    with sorted keys; an InvalidGraph for a pair given twice or one that does not exist."""
    dense = _dense_index(ctx, trees, ids)
    if dense is not None:
        return dense
    tree_values, tree_rank = np.unique(trees, return_inverse=True)
    id_values, id_rank = np.unique(ids, return_inverse=True)
    span = max(id_values.size, 1)
    keys = tree_rank.ravel() * span + id_rank.ravel()
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if np.any(sorted_keys[1:] == sorted_keys[:-1]):
        raise ctx.error("a (tree id, node id) pair appears twice")

    def locate(want_trees: np.ndarray, want_ids: np.ndarray) -> np.ndarray:
        t, t_found = _sorted_position(tree_values, want_trees)
        i, i_found = _sorted_position(id_values, want_ids)
        k, k_found = _sorted_position(sorted_keys, t * span + i)
        _require_found(ctx, t_found & i_found & k_found, want_trees, want_ids)
        return order[k]

    return locate


def _dense_index(ctx: NodeContext, trees: np.ndarray, ids: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
    """``locate`` for the converters' layout, where each tree's nodes come together, trees in
    ascending order, numbered 0, 1, 2... (a pair's position is its tree's start plus its id);
    None for any other layout."""
    if trees.size == 0:
        return None
    starts = np.flatnonzero(np.concatenate([[True], trees[1:] != trees[:-1]]))
    tree_values = trees[starts]
    if np.any(tree_values[1:] <= tree_values[:-1]):
        return None
    counts = np.diff(np.append(starts, trees.size))
    if not np.array_equal(ids, np.arange(trees.size) - np.repeat(starts, counts)):
        return None

    def locate(want_trees: np.ndarray, want_ids: np.ndarray) -> np.ndarray:
        t, t_found = _sorted_position(tree_values, want_trees)
        _require_found(ctx, t_found & (want_ids >= 0) & (want_ids < counts[t]), want_trees, want_ids)
        return starts[t] + want_ids

    return locate


def _require_found(ctx: NodeContext, found: np.ndarray, trees: np.ndarray, ids: np.ndarray) -> None:
    """An InvalidGraph naming the first (tree id, node id) pair not found."""
    if not found.all():
        bad = int(np.flatnonzero(~found)[0])
        raise ctx.error(f"(tree id, node id) {(int(trees[bad]), int(ids[bad]))} does not exist")


def _sorted_position(values: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each wanted item sits in the sorted array ``values``, and whether it is there."""
    if values.size == 0:
        return np.zeros(wanted.shape, dtype=np.intp), np.zeros(wanted.shape, dtype=bool)
    at = np.minimum(np.searchsorted(values, wanted), values.size - 1)
    return at, values[at] == wanted


def _forest_legacy(ctx: NodeContext, prefix: str) -> _Forest:
    """The forest of a TreeEnsembleRegressor/Classifier node; ``prefix`` names its weights."""
    nodes = {
        "treeids": _ints(ctx, "nodes_treeids"),
        "nodeids": _ints(ctx, "nodes_nodeids"),
        "featureids": _ints(ctx, "nodes_featureids"),
        "modes": _legacy_modes(ctx),
        "values": _float_attr(ctx, "nodes_values"),
        "truenodeids": _ints(ctx, "nodes_truenodeids"),
        "falsenodeids": _ints(ctx, "nodes_falsenodeids"),
    }
    tracks = _missing_tracks(ctx, nodes)
    leaves = {
        "treeids": _ints(ctx, f"{prefix}_treeids"),
        "nodeids": _ints(ctx, f"{prefix}_nodeids"),
        "ids": _ints(ctx, f"{prefix}_ids"),
        "weights": _float_attr(ctx, f"{prefix}_weights"),
    }
    _same_length(ctx, f"{prefix}_", leaves)
    tree_ids = nodes["treeids"]
    locate = _pair_index(ctx, tree_ids, nodes["nodeids"])
    mode = nodes["modes"]
    branch = mode != _LEAF
    true_next = np.zeros(mode.size, dtype=np.int64)
    false_next = np.zeros(mode.size, dtype=np.int64)
    true_next[branch] = locate(tree_ids[branch], nodes["truenodeids"][branch])
    false_next[branch] = locate(tree_ids[branch], nodes["falsenodeids"][branch])
    is_child = np.zeros(mode.size, dtype=bool)
    is_child[true_next[branch]] = True
    is_child[false_next[branch]] = True
    candidates = np.flatnonzero(~is_child)
    _, first_of_tree = np.unique(tree_ids[candidates], return_index=True)
    if first_of_tree.size != np.unique(tree_ids).size:
        raise ctx.error("a tree has no root")
    return _build_forest(
        ctx,
        roots=candidates[first_of_tree],
        true_next=true_next,
        false_next=false_next,
        feature=nodes["featureids"],
        threshold=nodes["values"],
        mode=mode,
        nan_true=tracks,
        members=None,
        leaf_node=locate(leaves["treeids"], leaves["nodeids"]),
        leaf_target=leaves["ids"],
        leaf_weight=leaves["weights"],
    )


@dataclass(frozen=True)
class _Slots:
    """The forest renumbered for traversal, one slot per place a node occupies.

    Slots 0 .. trees - 1 hold the roots, and the two children of a branch slot ``s`` are the
    adjacent slots ``child[s]`` (false branch) and ``child[s] + 1`` (true branch), so a step
    is ``child[s] + taken``. ``node[s]`` is the slot's node in the forest. The other arrays
    are the forest's, per slot, except at leaves: a leaf slot is its own child, its
    ``feature`` is -1 (the mark of a finished walk), its ``threshold`` NaN (every comparison
    but BRANCH_NEQ's is false) and its ``nan_true`` False, so no step moves it.
    """

    node: np.ndarray
    child: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    mode: np.ndarray
    nan_true: np.ndarray
    members: np.ndarray | None


def _slots(forest: _Forest) -> _Slots:
    """Lay the roots out first, then each branch node's (false, true) children side by side."""
    is_leaf = forest.mode == _LEAF
    branch = np.flatnonzero(~is_leaf)
    n_roots = forest.roots.size
    node = np.concatenate([forest.roots, forest.children.reshape(-1, 2)[branch].ravel()]).astype(np.intp)
    first_child = np.zeros(is_leaf.size, dtype=np.intp)
    first_child[branch] = n_roots + 2 * np.arange(branch.size)
    leaf = is_leaf[node]
    threshold = forest.threshold if forest.threshold.dtype.kind == "f" else forest.threshold.astype(np.float64)
    return _Slots(
        node=node,
        child=np.where(leaf, np.arange(node.size), first_child[node]),
        feature=np.where(leaf, -1, forest.feature[node]).astype(np.intp),
        threshold=np.where(leaf, np.nan, threshold[node]).astype(threshold.dtype),
        mode=forest.mode[node],
        nan_true=forest.nan_true[node] & ~leaf,
        members=None if forest.members is None else forest.members[node],
    )


def _comparison(slots: _Slots, xp: Any) -> Callable[[Any, Any], Any]:
    """``compare(values, s)``: whether each walk takes the true branch at slot ``s``; false at leaves.

    An ensemble whose branches all use one of the ordered comparisons or BRANCH_EQ (the
    converters write only BRANCH_LEQ or BRANCH_LT) compares with that one ufunc, which the NaN
    thresholds of leaves make false; mixed modes, BRANCH_NEQ and BRANCH_MEMBER choose per slot.
    """
    threshold = slots.threshold
    branch_modes = set(np.unique(slots.mode[slots.mode != _LEAF]).tolist())
    if len(branch_modes) <= 1 and not branch_modes & {_NEQ, _MEMBER}:
        ufunc = getattr(xp, _UFUNC_NAMES[branch_modes.pop() if branch_modes else _LEQ])
        return lambda values, s: ufunc(values, xp.take(threshold, s))

    # LEQ = lt|eq, LT = lt, GTE = ~lt, GT = ~(lt|eq), EQ = eq, NEQ = ~eq; MEMBER and LEAF use none.
    use_lt = np.isin(slots.mode, (_LEQ, _LT, _GTE, _GT))
    use_eq = np.isin(slots.mode, (_LEQ, _GT, _EQ, _NEQ))
    invert = np.isin(slots.mode, (_GTE, _GT, _NEQ))
    members = slots.members
    is_member = slots.mode == _MEMBER

    def compare(values, s):
        slot_threshold = xp.take(threshold, s)
        taken = (values < slot_threshold) & xp.take(use_lt, s)
        taken |= (values == slot_threshold) & xp.take(use_eq, s)
        taken ^= xp.take(invert, s)
        if members is not None:
            at_member = is_member[s]
            taken[at_member] = (members[s[at_member]] == values[at_member][:, None]).any(axis=1)
        return taken

    return compare


# The traversal keeps its starting arrays for batches of up to this many (row, tree) walks.
_CACHED_WALKS = 1 << 18


def _traversal(forest: _Forest, xp: Any) -> Callable[[Any], Any]:
    """``leaves(x)``: the (N, trees) leaf node that each row of x reaches in each tree.

    Each (row, tree) walk is a slot, the offset of its row in the flattened x and its output
    position, kept in flat arrays ordered tree by tree (nearby walks read nearby slots). All
    walks step down one level per pass. Most end long before the deepest leaf (boosted trees
    are lopsided), so once at most half of the walks left are still at a branch, the
    finished ones are written out and dropped; compacting more often costs more than it saves.
    """
    slots = _slots(forest)
    compare = _comparison(slots, xp)
    n_trees = forest.roots.size
    n_used = int(forest.feature.max()) + 1 if forest.feature.size else 0

    def start(n: int, n_features: int) -> tuple[Any, Any, Any, Any]:
        """Every walk's root slot, row offset, index of its root's feature in the flattened x
        and flat (N, trees) output position, read-only."""
        root = xp.repeat(xp.arange(n_trees), n)
        row_start = xp.tile(xp.arange(n) * n_features, n_trees)
        arrays = (
            root,
            row_start,
            row_start + xp.take(slots.feature, root),
            (xp.arange(n_trees)[:, None] + xp.arange(n) * n_trees).ravel(),
        )
        for a in arrays:
            a.flags.writeable = False
        return arrays

    # Building them takes a few percent of a run: keep the last batch shape's, when not too big.
    cached_start = functools.lru_cache(maxsize=1)(start)

    def leaves(x):
        n, n_features = x.shape
        if n_features < n_used:
            raise ValueError(f"the trees read feature {n_used - 1} but X has {n_features} features")
        flat = xp.ascontiguousarray(x).ravel()
        has_nan = x.dtype.kind == "f" and bool(xp.isnan(flat).any())
        s, row_start, at, position = (cached_start if n * n_trees <= _CACHED_WALKS else start)(n, n_features)
        reached = xp.empty(n * n_trees, dtype=np.intp)
        while s.size:  # every walk is at a leaf after forest.depth steps
            values = xp.take(flat, at)
            taken = compare(values, s)
            if has_nan:
                taken = xp.where(xp.isnan(values), xp.take(slots.nan_true, s), taken)
            s = xp.take(slots.child, s)
            s += taken
            feature = xp.take(slots.feature, s)
            at_branch = feature >= 0
            if xp.count_nonzero(at_branch) <= s.size // 2:
                reached[position] = s
                keep = xp.flatnonzero(at_branch)
                s, feature, row_start, position = (xp.take(a, keep) for a in (s, feature, row_start, position))
            at = row_start + feature  # a leaf's -1 reads a valid, unused value
        return xp.take(slots.node, reached).reshape(n, n_trees)

    return leaves


# Up to this many targets, leaf weights are summed through a dense (target, node) table.
_DENSE_TARGETS = 32


def _node_table(forest: _Forest, n_targets: int, values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``total(leaves)``: (N, n_targets) sums over the trees of ``values`` (one per leaf weight).

    Only the targets that some leaf weighs are summed (a binary classifier's trees often vote
    for one class); the others are 0.
    """
    used, target = np.unique(forest.target, return_inverse=True)
    table = np.zeros((used.size, forest.count.size))
    owner = np.repeat(np.arange(forest.count.size), forest.count)
    np.add.at(table, (target, owner), values)

    def total(leaves):
        # Gathering along the node axis of a (target, node) table is much faster than gathering rows.
        sums = np.take(table, leaves, axis=1).sum(axis=2).T
        if used.size == n_targets:
            return sums
        out = np.zeros((leaves.shape[0], n_targets))
        out[:, used] = sums
        return out

    return total


def _contributions(forest: _Forest, leaves: np.ndarray, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Every weight of every leaf reached: its flat (row, target) cell and its weight index."""
    n_rows, n_trees = leaves.shape
    flat = leaves.ravel()
    counts = forest.count[flat]
    ends = np.cumsum(counts)
    k = np.repeat(forest.first[flat] - (ends - counts), counts) + np.arange(ends[-1] if ends.size else 0)
    rows = np.repeat(np.arange(n_rows * n_trees) // n_trees, counts)
    return rows * n_targets + forest.target[k], k


def _aggregation(forest: _Forest, n_targets: int, how: str) -> Callable[[np.ndarray], np.ndarray]:
    """``aggregate(leaves)``: the (N, n_targets) float64 aggregate of the reached leaves' weights.

    AVERAGE divides the sum by the number of trees; a target that no reached leaf weighs
    is 0 for MIN and MAX.
    """
    divisor = forest.roots.size if how == "AVERAGE" else 1
    if how in ("SUM", "AVERAGE") and n_targets <= _DENSE_TARGETS:
        total = _node_table(forest, n_targets, forest.weight)
        return lambda leaves: total(leaves) / divisor
    ufunc, start = {"MIN": (np.minimum, np.inf), "MAX": (np.maximum, -np.inf)}.get(how, (None, 0.0))

    def aggregate(leaves):
        size = leaves.shape[0] * n_targets
        cells, k = _contributions(forest, leaves, n_targets)
        if ufunc is None:
            total = np.bincount(cells, weights=forest.weight[k], minlength=size) / divisor
        else:
            total = np.full(size, start)
            ufunc.at(total, cells, forest.weight[k])
            total[np.bincount(cells, minlength=size) == 0] = 0.0
        return total.reshape(-1, n_targets)

    return aggregate


def _same_reach(forest: _Forest, n_targets: int) -> np.ndarray | None:
    """The (n_targets,) mask of the targets that the reached leaves weigh, when it is the same
    for every row: when in each tree all the leaves weigh the same set of targets (LightGBM's
    one-class trees, scikit-learn's forests). None when it depends on the row."""
    if n_targets > _DENSE_TARGETS:
        return None
    owner = np.repeat(np.arange(forest.count.size), forest.count)
    mask = np.zeros(forest.count.size, dtype=np.int64)
    np.bitwise_or.at(mask, owner, np.left_shift(1, forest.target))
    # Walk down from the roots, each distinct (tree, node) once, and gather the masks of each
    # tree's leaves: the tree's leaves weigh the same targets when their union is their intersection.
    is_leaf = forest.mode == _LEAF
    n_nodes = is_leaf.size
    union = np.zeros(forest.roots.size, dtype=np.int64)
    intersection = np.full(forest.roots.size, -1, dtype=np.int64)
    owned = _leaf_owners(forest, is_leaf)
    if owned is not None:  # every node in one tree, reached once: each tree's leaves at once
        leaves, trees = owned
        np.bitwise_or.at(union, trees, mask[leaves])
        np.bitwise_and.at(intersection, trees, mask[leaves])
    tree, node = np.arange(forest.roots.size), forest.roots
    while owned is None and node.size:
        at_leaf = is_leaf[node]
        np.bitwise_or.at(union, tree[at_leaf], mask[node[at_leaf]])
        np.bitwise_and.at(intersection, tree[at_leaf], mask[node[at_leaf]])
        below = forest.children.reshape(-1, 2)[node[~at_leaf]].ravel()
        tree, node = np.divmod(np.unique(np.repeat(tree[~at_leaf], 2) * n_nodes + below), n_nodes)
    if not np.array_equal(union, intersection):
        return None
    return ((np.bitwise_or.reduce(union) >> np.arange(n_targets)) & 1).astype(bool)


def _leaf_owners(forest: _Forest, is_leaf: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The leaves reachable from the roots and the tree of each, when the walk from the roots
    reaches every node at most once (no node shared within or between trees); else None."""
    tree_of = np.full(is_leaf.size, -1, dtype=np.int64)
    tree, node = np.arange(forest.roots.size), forest.roots
    reached = 0
    while node.size:
        if (tree_of[node] >= 0).any():
            return None
        tree_of[node] = tree
        reached += node.size
        if np.count_nonzero(tree_of >= 0) != reached:  # a node twice in this step
            return None
        branch = ~is_leaf[node]
        tree, node = np.repeat(tree[branch], 2), forest.children.reshape(-1, 2)[node[branch]].ravel()
    leaves = np.flatnonzero((tree_of >= 0) & is_leaf)
    return leaves, tree_of[leaves]


def _reached(forest: _Forest, n_targets: int) -> Callable[[np.ndarray], np.ndarray]:
    """``reached(leaves)``: whether any reached leaf weighs each target, (N, n_targets), or
    (n_targets,) when that is the same for every row."""
    same = _same_reach(forest, n_targets)
    if same is not None:
        return lambda leaves: same
    if n_targets <= _DENSE_TARGETS:
        count = _node_table(forest, n_targets, np.ones(forest.weight.size))
        return lambda leaves: count(leaves) > 0

    def reached(leaves):
        cells, _ = _contributions(forest, leaves, n_targets)
        return (np.bincount(cells, minlength=leaves.shape[0] * n_targets) > 0).reshape(-1, n_targets)

    return reached


def _check_targets(ctx: NodeContext, forest: _Forest, n_targets: int, what: str) -> None:
    if forest.target.size and (forest.target.min() < 0 or forest.target.max() >= n_targets):
        raise ctx.error(f"a leaf weight names a {what} outside [0, {n_targets})")


def _enum(ctx: NodeContext, name: str, default: int, choices: tuple[str, ...]) -> str:
    """The name of an enum attribute given as an index into ``choices``."""
    value = ctx.attr(name, default)
    if not 0 <= value < len(choices):
        raise ctx.error(f"{name} must be between 0 and {len(choices) - 1}")
    return choices[value]


def _as_float_rows(xp: Any, x: Any) -> Any:
    """The input as a 2-D batch; integer features are compared as float64."""
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    return x.reshape(1, -1) if x.ndim == 1 else x


@op("TreeEnsemble", 5, domain=ML)
def tree_ensemble(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Per-target aggregate (sum, average, min or max) of the leaf weights, post-transformed."""
    forest = _forest_v5(ctx)
    n_targets = ctx.attr("n_targets", 1)
    _check_targets(ctx, forest, n_targets, "target")
    how = _enum(ctx, "aggregate_function", 1, _AGGREGATES)
    transform = post_transform(ctx, xp, _enum(ctx, "post_transform", 0, POST_TRANSFORM_NAMES))
    leaves = _traversal(forest, xp)
    aggregate = _aggregation(forest, n_targets, how)

    def run(x):
        return transform(aggregate(leaves(_as_float_rows(xp, x)))).astype(x.dtype)

    return run


def _base_values(ctx: NodeContext, size: int) -> np.ndarray:
    """base_values(_as_tensor) padded with zeros to ``size`` entries."""
    given = _float_attr(ctx, "base_values").astype(np.float64)
    if given.size > size:
        raise ctx.error(f"base_values has {given.size} values for {size} outputs")
    return np.concatenate([given, np.zeros(size - given.size)])


@op("TreeEnsembleRegressor", 1, 3, domain=ML)
def tree_ensemble_regressor(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Per-target aggregate of the leaf weights plus base_values, post-transformed, as float32."""
    forest = _forest_legacy(ctx, "target")
    n_targets = ctx.attr("n_targets", 1)
    _check_targets(ctx, forest, n_targets, "target")
    how = ctx.attr("aggregate_function", "SUM")
    if how not in _AGGREGATES:
        raise ctx.error(f"unknown aggregate_function '{how}'")
    base = _base_values(ctx, n_targets)
    transform = post_transform(ctx, xp, ctx.attr("post_transform", "NONE"))
    leaves = _traversal(forest, xp)
    aggregate = _aggregation(forest, n_targets, how)

    def run(x):
        return transform(aggregate(leaves(_as_float_rows(xp, x))) + base).astype(np.float32)

    return run


@op("TreeEnsembleClassifier", 1, 3, domain=ML)
def tree_ensemble_classifier(ctx: NodeContext, xp: Any) -> Callable[..., Any]:
    """Summed class votes plus base_values: top class label and post-transformed scores.

    With two labels and votes for a single class (one score s per row), the label is the
    second one when s exceeds 0.5 (all weights non-negative: s is a probability) or 0 (signed
    weights: s is a margin). When that class is class 0, the scores are [1 - s, s] or [-s, s]
    respectively, [logistic(-s), logistic(s)] for LOGISTIC and [probit(s), s] for PROBIT, as
    onnxruntime writes them.
    """
    labels = class_labels(ctx, "classlabels_int64s")
    n_classes = labels.size
    forest = _forest_legacy(ctx, "class")
    _check_targets(ctx, forest, n_classes, "class")
    base = _base_values(ctx, n_classes)
    name = ctx.attr("post_transform", "NONE")
    transform = post_transform(ctx, xp, name)
    logistic = post_transform(ctx, xp, "LOGISTIC")
    leaves = _traversal(forest, xp)
    aggregate = _aggregation(forest, n_classes, "SUM")
    reached = _reached(forest, n_classes)
    voted = np.unique(forest.target)
    # A class can win only if it has a base value or a reached leaf voted for it.
    has_base = np.arange(n_classes) < _float_attr(ctx, "base_values").size
    single = n_classes == 2 and voted.size == 1
    probabilities = bool((forest.weight >= 0).all())
    cutoff = 0.5 if probabilities else 0.0

    def two_scores(s):
        if name == "LOGISTIC":
            return xp.stack([logistic(-s), logistic(s)], axis=1)
        if name == "PROBIT":
            return xp.stack([transform(s), s], axis=1)
        return xp.stack([1.0 - s if probabilities else -s, s], axis=1)

    def run(x):
        reached_leaves = leaves(_as_float_rows(xp, x))
        scores = aggregate(reached_leaves) + base
        if single:
            s = scores[:, voted[0]]
            label = labels[(s > cutoff).astype(np.int64)]
            z = two_scores(s) if voted[0] == 0 else transform(scores)
            return label, z.astype(np.float32)
        if not has_base.all():
            scores_to_rank = xp.where(reached(reached_leaves) | has_base, scores, -np.inf)
        else:
            scores_to_rank = scores
        return labels[xp.argmax(scores_to_rank, axis=1)], transform(scores).astype(np.float32)

    return run
