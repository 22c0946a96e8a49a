"""Axis permutations: Transpose, DepthToSpace, SpaceToDepth."""

from __future__ import annotations

from onnxmux.providers.cpu.registry import op

# DepthToSpace splits the channels C into (blocksize, blocksize, C') for DCR and
# (C', blocksize, blocksize) for CRD; these are the permutations of the 6-D view
# [N, <channel split>, H, W] that interleave the blocks with H and W.
_DEPTH_TO_SPACE_PERM = {"DCR": (0, 3, 4, 1, 5, 2), "CRD": (0, 1, 4, 2, 5, 3)}
# SpaceToDepth views the input as [N, C, H', b, W', b] and gathers the two block dims
# before the channels (DCR) or after them (CRD).
_SPACE_TO_DEPTH_PERM = {"DCR": (0, 3, 5, 1, 2, 4), "CRD": (0, 1, 3, 5, 2, 4)}


@op("Transpose", 1)
def transpose(ctx, xp):
    """Permute the axes by ``perm`` (reversed by default)."""
    perm = ctx.attr("perm", None)
    if perm is not None and sorted(perm) != list(range(len(perm))):
        raise ctx.error(f"perm {perm} is not a permutation")

    def run(x):
        if perm is not None and len(perm) != x.ndim:
            raise ValueError(f"perm {perm} does not match rank {x.ndim}")
        return xp.transpose(x, perm)

    return run


def _blocksize_and_mode(ctx) -> tuple[int, str]:
    blocksize = ctx.attr("blocksize")
    mode = ctx.attr("mode", "DCR")
    if blocksize < 1:
        raise ctx.error(f"blocksize must be positive, got {blocksize}")
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"unknown mode '{mode}'")
    return blocksize, mode


@op("DepthToSpace", 1, 11)
def depth_to_space(ctx, xp):
    """Move blocks of channels into blocksize x blocksize spatial tiles (DCR or CRD order)."""
    b, mode = _blocksize_and_mode(ctx)
    perm = _DEPTH_TO_SPACE_PERM[mode]

    def run(x):
        n, c, h, w = x.shape
        if c % (b * b):
            raise ValueError(f"channels {c} are not divisible by blocksize^2 = {b * b}")
        split = (b, b, c // (b * b)) if mode == "DCR" else (c // (b * b), b, b)
        tiles = xp.transpose(xp.reshape(x, (n, *split, h, w)), perm)
        return xp.reshape(tiles, (n, c // (b * b), h * b, w * b))

    return run


@op("SpaceToDepth", 1, 28)
def space_to_depth(ctx, xp):
    """Move blocksize x blocksize spatial tiles into the channels (DCR or CRD order)."""
    b, mode = _blocksize_and_mode(ctx)
    perm = _SPACE_TO_DEPTH_PERM[mode]

    def run(x):
        n, c, h, w = x.shape
        if h % b or w % b:
            raise ValueError(f"spatial dims {h}x{w} are not divisible by blocksize {b}")
        blocks = xp.transpose(xp.reshape(x, (n, c, h // b, b, w // b, b)), perm)
        return xp.reshape(blocks, (n, c * b * b, h // b, w // b))

    return run
