"""The graph optimizer: onnxruntime-style rewrite levels over the onnx-ir graph.

``optimize(model, level)`` applies the built-in rules of every level up to ``level`` (basic = 1,
extended = 2; 99 adds nothing here: the per-provider fusions run after partitioning), repeating
them until nothing changes, then the user's own rules. Any rule that raises or leaves an
invalid graph is rolled back and reported with a warning; the model is never left half-rewritten.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Sequence

import onnx_ir as ir

from onnxmux.core.optimizer.basic import (
    CommonSubexpressionElimination,
    ConstantSharing,
    DeadCodeElimination,
    EliminateDropout,
    EliminateIdentity,
    EliminateIdentityTranspose,
    EliminateNoOpCast,
    EliminateNoOpExpand,
    EliminateNoOpReshape,
    EliminateNoOpSlice,
    EliminateZeroPad,
)
from onnxmux.core.optimizer.editing import (
    NODE_INDEX_META,
    ONNXMUX_DOMAIN,
    PRIVATE_OPS_META,
    NodeIndex,
    count_nodes,
    reserve_names,
    subgraphs,
)
from onnxmux.core.optimizer.extended import (
    CollapseReshapeChain,
    FuseConvAdd,
    FuseConvBatchNorm,
    FuseConvMul,
    FuseGemmTranspose,
    FuseMatMulAddToGemm,
)
from onnxmux.core.optimizer.folding import ConstantFolding
from onnxmux.core.optimizer.reshape_dims import ConstantReshapeTarget
from onnxmux.core.optimizer.rms_norm import FuseRMSNormalization
from onnxmux.core.optimizer.rules import PatternRule, Rule, RuleReport
from onnxmux.core.optimizer.safety import Snapshot, clone_snapshot, graph_problems, model_problems, restore_clone
from onnxmux.core.optimizer.transformer import FuseFastGelu, FuseGelu, FuseLayerNormalization, FuseSoftmax

if TYPE_CHECKING:
    from onnxmux.core.custom_ops import SessionCustomOps

__all__ = ["BUILTIN_RULES", "LEVEL_NAMES", "PatternRule", "Rule", "RuleReport", "optimize", "save_optimized"]

logger = logging.getLogger("onnxmux")

LEVEL_NAMES = {1: "basic", 2: "extended", 99: "all"}

#: Every built-in rule, with the lowest level that enables it, in the order they run (dead code
#: elimination last, so each round ends with a clean graph).
BUILTIN_RULES: tuple[tuple[int, type[Rule]], ...] = (
    (1, ConstantFolding),
    (1, EliminateIdentity),
    (1, EliminateDropout),
    (1, EliminateNoOpCast),
    (1, EliminateNoOpReshape),
    (1, EliminateIdentityTranspose),
    (1, EliminateNoOpSlice),
    (1, EliminateZeroPad),
    (1, EliminateNoOpExpand),
    (1, ConstantSharing),
    (1, CommonSubexpressionElimination),
    (2, FuseConvBatchNorm),
    (2, FuseConvMul),
    (2, FuseConvAdd),
    (2, FuseMatMulAddToGemm),
    (2, FuseGemmTranspose),
    (2, ConstantReshapeTarget),
    (2, CollapseReshapeChain),
    (2, FuseGelu),
    (2, FuseFastGelu),
    (2, FuseLayerNormalization),
    (2, FuseRMSNormalization),
    (2, FuseSoftmax),
    (1, DeadCodeElimination),
)

#: Rounds of the built-in rules at most; each round runs them all, and one without change ends.
MAX_ROUNDS = 5


class _RuleFailed(Exception):
    """A rule raised or broke the graph; carries the rule's name and what went wrong."""

    def __init__(self, rule: Rule, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def optimize(
    model: ir.Model,
    level: int,
    disabled: Collection[str] = (),
    extra_rules: Sequence[Rule] = (),
    custom_ops: SessionCustomOps | None = None,
    private_ops: Callable[[str], bool] | None = None,
) -> list[RuleReport]:
    """Rewrite model.graph in place at ``level`` (0, 1, 2, 99 = onnxmux.GraphOptimizationLevel
    values), skipping rules whose name is in ``disabled``, then applying user ``extra_rules``;
    returns what changed (one report per rule that changed the graph or failed). Constant folding
    also evaluates the pure ones of ``custom_ops``.

    ``private_ops(op_type)`` says whether the session's providers run the com.onnxmux op
    ``op_type``; fusions that would create one it refuses are skipped."""
    level = int(level)
    if isinstance(disabled, str):  # the config entry's comma-separated form
        disabled = disabled.split(",")
    disabled = {name.strip() for name in disabled if name.strip()}
    known = {cls.name for _, cls in BUILTIN_RULES} | {rule.name for rule in extra_rules}
    unknown = disabled - known
    if unknown:
        logger.warning(
            "optimization.disable_rules names unknown rules: %s (known: %s)",
            ", ".join(sorted(unknown)),
            ", ".join(sorted(known)),
        )
    bodies = subgraphs(model.graph)
    _share_opsets(model.graph, bodies)
    if private_ops is not None:
        for graph in [model.graph, *bodies]:
            graph.meta[PRIVATE_OPS_META] = private_ops
    reserve_names(model.graph, bodies)
    run = _Run(model, bodies)
    builtins = [_builtin(cls, custom_ops) for since, cls in BUILTIN_RULES if since <= level and cls.name not in disabled]
    if builtins:
        run.builtins(builtins)
    users = [rule for rule in extra_rules if rule.name not in disabled]
    changed = sum(run.user(rule) for rule in users)
    if changed and DeadCodeElimination.name not in disabled:
        run.builtins([DeadCodeElimination()])
    return run.results()


def _builtin(cls: type[Rule], custom_ops: SessionCustomOps | None) -> Rule:
    """An instance of a built-in rule; constant folding is told the session's custom ops."""
    return ConstantFolding(custom_ops=custom_ops) if cls is ConstantFolding else cls()


def _share_opsets(graph: ir.Graph, bodies: list[ir.Graph]) -> None:
    """Give the subgraphs ``bodies`` the model's opset imports, so rules read the opset from any graph.

    (Subgraphs have no imports of their own in ONNX; this is not serialized.)
    """
    for sub in bodies:
        for domain, version in graph.opset_imports.items():
            sub.opset_imports.setdefault(domain, version)


class _Run:
    """One ``optimize`` call: applies rules with rollback and collects their reports."""

    def __init__(self, model: ir.Model, bodies: list[ir.Graph]) -> None:
        self.model = model
        self.reports: dict[str, RuleReport] = {}
        #: Whether any node holds a subgraph (built-in rules never add one); ``bodies`` are the subgraphs.
        self.nested = bool(bodies)
        #: The node count (subgraphs included) as of the last change.
        self.nodes = self._count()
        #: The op types in the graph and its subgraphs as of the last change (None: not known).
        self.op_types: set[str] | None = None
        #: The main graph's nodes as of the last change (None: not taken), for the built-in rules.
        self.index: NodeIndex | None = None

    def _forget(self) -> None:
        """The graph changed: what was known of its nodes is stale."""
        self.op_types = self.index = None

    def _count(self) -> int:
        graph = self.model.graph
        return count_nodes(graph) if self.nested else len(graph)

    def results(self) -> list[RuleReport]:
        """The reports, in the order the rules first changed (or broke) the graph."""
        return list(self.reports.values())

    def builtins(self, rules: list[Rule]) -> None:
        """Run ``rules`` in rounds until none changes anything; a failing rule is rolled back
        (with everything after the last good state) and the rounds restart without it.

        The graph is checked once, after the last round; only when something failed are the
        rounds replayed from the snapshot with a check after every rewrite, which finds the rule
        at fault (rules are deterministic, so the replay makes the same rewrites).
        """
        graph = self.model.graph
        saved = Snapshot(graph, subgraphs(graph) if self.nested else [])
        kept = dict(self.reports)
        each = False
        while True:
            try:
                if self._rounds(rules, graph_problems if each else None) and not each:
                    problems = graph_problems(self.model.graph)
                    if problems:
                        raise _RuleFailed(rules[0], "left an invalid graph: " + "; ".join(problems[:3]))
                return
            except _RuleFailed as failure:
                saved.restore()
                self.nodes = self._count()
                self._forget()
                self.reports = kept
                if not each:  # replay, checking every rewrite, to blame the right rule
                    each = True
                    continue
                rules = [r for r in rules if r is not failure.rule]
                self._failed(failure.rule, "built-in", failure.reason)
                kept = dict(self.reports)

    def _rounds(self, rules: list[Rule], check) -> bool:
        """Apply the rules in rounds until one changes nothing; True when any rule changed the graph."""
        changed_any = False
        for _ in range(MAX_ROUNDS):
            changed = False
            for rule in rules:
                if self._apply(rule, "built-in", check=check):
                    changed = True
            if not changed:
                break
            changed_any = True
        return changed_any

    def user(self, rule: Rule) -> bool:
        """Apply one user rule on a snapshot-protected graph; True when it changed something."""
        graph = self.model.graph
        saved = clone_snapshot(graph)
        try:
            return self._apply(rule, "user", check=lambda _: model_problems(self.model))
        except _RuleFailed as failure:
            restore_clone(graph, saved)
            self.nodes = self._count()
            self._forget()
            self._failed(rule, "user", failure.reason)
            return False

    def _present(self, roots: frozenset[str]) -> bool:
        """Whether a node of one of the op types ``roots`` is in the graph or its subgraphs."""
        if self.op_types is None:
            graph = self.model.graph
            bodies = subgraphs(graph) if self.nested else []
            self.op_types = {node.op_type for g in bodies for node in g}
            self.op_types.update(self._index().by_op)
        return not roots.isdisjoint(self.op_types)

    def _index(self) -> NodeIndex:
        """The main graph's NodeIndex, taken again after each change."""
        if self.index is None:
            self.index = NodeIndex(self.model.graph)
        return self.index

    def _apply(self, rule: Rule, kind: str, check) -> int:
        """Apply ``rule`` to the main graph (and subgraphs); raise _RuleFailed when it breaks."""
        graph = self.model.graph
        before = self.nodes
        if rule.roots is not None and not self._present(rule.roots):
            return 0
        if kind == "built-in":  # user rules may edit the graph without saying so: they walk it
            graph.meta[NODE_INDEX_META] = self._index()
        try:
            rewrites = int(rule.apply(graph) or 0)
            if rule.subgraphs and self.nested:
                for sub in subgraphs(graph):
                    rewrites += int(rule.apply(sub) or 0)
        except Exception as exc:
            raise _RuleFailed(rule, f"raised {type(exc).__name__}: {exc}") from exc
        finally:
            graph.meta.pop(NODE_INDEX_META, None)
        if rewrites or kind == "user":  # a user rule may be wrong about its count
            self._forget()
        if not rewrites and kind != "user":
            return 0
        # A user rule is checked even when it reports no rewrites: it may be wrong about that too.
        problems = check(graph) if check is not None else []
        if problems:
            raise _RuleFailed(rule, "left an invalid graph: " + "; ".join(problems[:3]))
        if not rewrites:
            return 0
        after = self.nodes = self._count()
        level = self._level_of(rule, kind)
        logger.info("optimizer: %s rule %s made %d rewrites: %d -> %d nodes", level, rule.name, rewrites, before, after)
        report = self.reports.get(rule.name)
        if report is None:
            self.reports[rule.name] = RuleReport(rule.name, level, rewrites, before, after)
        else:
            report.rewrites += rewrites
            report.nodes_after = after
        return rewrites

    def _failed(self, rule: Rule, kind: str, reason: str) -> None:
        count = self.nodes
        logger.warning("optimizer: %s rule %s %s; its changes were rolled back", kind, rule.name or rule, reason)
        self.reports[rule.name] = RuleReport(rule.name, self._level_of(rule, kind), 0, count, count, reason)

    @staticmethod
    def _level_of(rule: Rule, kind: str) -> str:
        if kind == "user":
            return "user"
        since = next((lvl for lvl, cls in BUILTIN_RULES if isinstance(rule, cls)), 1)
        return LEVEL_NAMES[since]


#: Above this many initializer bytes, save_optimized writes weights to an external data file.
EXTERNAL_DATA_BYTES = 1536 * 1024 * 1024


def save_optimized(model: ir.Model, path: str, data_file: str = "", min_size: int = 256) -> None:
    """Write the (optimized) model to ``path`` as a valid ONNX file, declaring com.onnxmux when used.

    Weights go to ``<file name>.data`` beside it when the model's weights were external data
    already (the saved file must not point into the original model's data) or when they would
    exceed protobuf's 2 GB limit. ``data_file`` (onnxruntime's
    ``session.optimized_model_external_initializers_file_name``) names that file and always
    moves initializers of at least ``min_size`` bytes there.
    """
    if any(node.domain == ONNXMUX_DOMAIN for node in model.graph.all_nodes()):
        model.opset_imports.setdefault(ONNXMUX_DOMAIN, 1)
    values = [v for g in model.graphs() for v in g.initializers.values() if v.const_value is not None]
    external = [v for v in values if isinstance(v.const_value, ir.ExternalTensor)]
    if data_file or external or sum(v.const_value.nbytes for v in values) > EXTERNAL_DATA_BYTES:
        # onnx-ir closes the memory map of each external tensor it saves, which fails while the
        # compiled plan holds arrays over it: save in-memory views of the same bytes instead.
        originals = {v: v.const_value for v in external}
        try:
            for v, tensor in originals.items():
                v.const_value = ir.Tensor(tensor.numpy(), name=tensor.name)
            ir.save(model, path, external_data=data_file or Path(path).name + ".data", size_threshold_bytes=min_size)
        finally:
            for v, tensor in originals.items():
                v.const_value = tensor
    else:
        ir.save(model, path)
