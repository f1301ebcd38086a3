"""Gradient projection across the widths' gradients (PCGrad; Yu et al. 2020) and SFSC's merge.

Input: one gradient dict per width, ``{param name: tensor}``; a parameter the width does not use (another
width's switchable BN) is absent or None. In every inner product a missing gradient counts as zeros.

Projection, for each width i and each other width j in a random order: if <g_i', g_j> < 0 then
g_i' <- g_i' - <g_i', g_j> / ||g_j||^2 * g_j, where g_i' is the running copy of g_i and g_j the *original*
gradient (as in the paper and the reference implementations; we skip j == i, which they also check but which
can only fire in degenerate cases). Granularity decides what one inner product covers:
- "vector": the whole flattened gradient over all parameters, missing ones as zeros (the original PCGrad and the
  PrunNet/SFSC reconstruction). A consequence kept on purpose: projecting g_i onto g_j also writes -c * g_j into
  the parameters only j uses (e.g. j's private BN), exactly like the flattened reference.
- "tensor": separately per parameter tensor.
- "kernel": separately per output channel (dim-0 slice) of every tensor with >= 2 dims (conv kernels, rows of
  linear weights: the CVPR 2025 follow-up's per-kernel projection); 1-D tensors (biases, BN affine) stay one
  group each, since per-element projection of a scalar onto a conflicting scalar would just zero it.

Implementation: every g_i' is a linear combination sum_k A[i, k] g_k of the originals, and
<g_i', g_j> = sum_k A[i, k] G[k, j] with G the Gram matrix of the originals. So one pass of dot products gives G
(per group), the sequential PCGrad rule runs on tiny n x n matrices batched over all groups, and the projected
gradients or the merge are one weighted sum each. Exact algebra, about two passes over the gradients.

Merge (docs/design.md §4): "sum" (the default; PCGrad's Algorithm 1 and its authors' code) sums every parameter's
projected gradients over the widths, as sfsc-sum's accumulated backward does. "mean" (an option) takes the mean
for parameters every width uses and the sum for width-private ones (only some widths use them); "uses" comes from
the *original* gradients (``usage``), not from the projected ones. With Adam's coupled L2 weight decay the mean
makes weight decay n times stronger, relative to the gradient, on the shared parameters.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

import torch

GRANULARITIES = ("vector", "tensor", "kernel")
Grads = list[dict[str, torch.Tensor | None]]


def usage(grads: Grads, *, nonzero: bool = False) -> list[set[str]]:
    """Per width, the parameters it uses: gradient present and not None (and, if ``nonzero``, not all zeros,
    for callers that zero-fill instead of leaving None)."""
    return [{name for name, g in gw.items() if g is not None and (not nonzero or bool(g.any()))} for gw in grads]


def _names(grads: Grads) -> list[str]:
    return list(dict.fromkeys(name for gw in grads for name in gw))  # union, first-seen order


def _only_present(ts: list[torch.Tensor | None]) -> int | None:
    """The index of the one width that has this gradient, if exactly one has it (a width-private parameter).
    Such parameters are many (switchable BN: one set per width) and tiny: their norms and merge weights go
    through one batched (foreach) operation each instead of a few operations per tensor, which on a GPU is
    the difference between a few launches and thousands."""
    present = [k for k, t in enumerate(ts) if t is not None]
    return present[0] if len(present) == 1 else None


def _rows(t: torch.Tensor, granularity: str) -> int:
    return t.shape[0] if granularity == "kernel" and t.dim() >= 2 else 1


CHUNK = 1 << 18  # elements per width in one Gram block: 4 widths x 1 MiB stays in cache


def _is_nhwc(t: torch.Tensor) -> bool:
    """A 4-D tensor stored channels_last (and not also plain-contiguous, as 1x1 kernels can be)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _rows_view(t: torch.Tensor, rows: int, nhwc: bool) -> torch.Tensor:
    """(rows, -1) of a gradient. Inner products do not depend on the element order, only on every width using
    the same one: channels_last gradients (--channels-last) are read in their memory order (O, H, W, I), which
    keeps dim 0 first for the kernel rows and is a view instead of a copy; ``nhwc`` is decided once per parameter
    so that every width is permuted alike (a width in another layout is copied into that order)."""
    return (t.permute(0, 2, 3, 1) if nhwc else t).reshape(rows, -1)


def _gram(ts: list[torch.Tensor | None], rows: int, buf: list[torch.Tensor]) -> torch.Tensor:
    """(rows, n, n) Gram matrix (float32 or wider) of one parameter's gradients, zeros for missing widths.

    Stacks the widths into a reused buffer block by block (rows of the kernel view, or column slices of a
    whole tensor) and multiplies; a fresh full-size stack costs more in page faults than the products."""
    present = [k for k, t in enumerate(ts) if t is not None]
    n, m = len(ts), len(present)
    shapes = {tuple(ts[k].shape) for k in present}
    if len(shapes) > 1:
        raise ValueError(f"one parameter has gradients of different shapes across widths: {sorted(shapes)}")
    nhwc = _is_nhwc(ts[present[0]])
    vs = [_rows_view(ts[k], rows, nhwc) for k in present]
    d = vs[0].shape[1]
    step = max(1, CHUNK // d) if rows > 1 else CHUNK  # rows per block, or columns per block when rows == 1
    blocks = []
    for s in range(0, rows if rows > 1 else d, step):
        part = [v[s:s + step] if rows > 1 else v[:, s:s + step] for v in vs]
        r, c = part[0].shape
        dtype = torch.promote_types(vs[0].dtype, torch.float32)  # half-precision grads: Gram in float32
        if buf[0].numel() < r * m * c or buf[0].device != vs[0].device or buf[0].dtype != dtype:
            buf[0] = torch.empty(r * m * c, device=vs[0].device, dtype=dtype)
        stacked = buf[0][:r * m * c].view(r, m, c)
        for k, p in enumerate(part):
            stacked[:, k].copy_(p)
        blocks.append(stacked @ stacked.mT)
    piece = torch.cat(blocks) if rows > 1 else blocks[0] if len(blocks) == 1 else torch.stack(blocks).sum(0)
    if m == n:
        return piece
    # Some widths lack this parameter (usually all but one: a width-private BN). Python-int indexing: an index
    # tensor would be one host-to-device copy per parameter, each waiting for the GPU's queue to drain.
    out = piece.new_zeros(rows, n, n)
    for a, ka in enumerate(present):
        for b, kb in enumerate(present):
            out[:, ka, kb] = piece[:, a, b]
    return out


def _orders(n: int, generator: torch.Generator | random.Random | None) -> list[list[int]]:
    """order[i] = the other widths in the order g_i is projected onto them; a fresh shuffle per i (as the
    reference). Identically seeded generators give identical orders, so distributed ranks agree."""
    orders = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        if isinstance(generator, torch.Generator):
            orders.append([others[p] for p in torch.randperm(len(others), generator=generator).tolist()])
        else:
            (generator or random).shuffle(others)  # None: the global ``random`` module, like the reference
            orders.append(others)
    return orders


def _pcgrad_coefficients(gram: torch.Tensor, orders: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequential PCGrad on (R, n, n) float64 Gram matrices: A with g_i' = sum_k A[:, i, k] g_k, and fired[:, i, j]
    = the projection of g_i onto g_j happened."""
    r, n, _ = gram.shape
    coef = torch.eye(n, dtype=gram.dtype).repeat(r, 1, 1)
    fired = torch.zeros(r, n, n, dtype=torch.bool)
    sq_norm = gram.diagonal(dim1=1, dim2=2).clamp_min(torch.finfo(gram.dtype).tiny)
    for i, order in enumerate(orders):
        for j in order:
            dot = (coef[:, i, :] * gram[:, :, j]).sum(-1)  # <g_i', g_j>
            hit = dot < 0
            coef[:, i, j] -= torch.where(hit, dot / sq_norm[:, j], 0.0)
            fired[:, i, j] = hit
    return coef, fired


def _combine(ts: list[torch.Tensor | None], w: torch.Tensor) -> torch.Tensor | None:
    """sum_k w[:, k] * ts[k] (w: (rows, n), one weight per dim-0 slice when rows > 1); None if nothing."""
    out = None
    for k, t in enumerate(ts):
        if t is None or not bool(w[:, k].any()):
            continue
        if w.shape[0] == 1:
            s = float(w[0, k])
            out = t * s if out is None else out.add_(t, alpha=s)
        else:
            wk = w[:, k].to(t.device, t.dtype).view(-1, *[1] * (t.dim() - 1))
            out = t * wk if out is None else out.addcmul_(t, wk)
    return out


MERGES = ("mean", "sum")


def _merge(grads: Grads, used: list[set[str]], coef: dict[str, torch.Tensor] | None,
           shared_rule: str = "sum") -> dict[str, torch.Tensor]:
    if shared_rule not in MERGES:
        raise ValueError(f"unknown merge {shared_rule!r}; choose one of {', '.join(MERGES)}")
    n, names = len(grads), _names(grads)
    shared = set.intersection(*map(set, used)) if used and shared_rule == "mean" else set()
    out, solo = {}, ([], [], [])  # solo: names, tensors, scales
    with torch.no_grad():
        for name in names:
            scale = 1.0 / n if name in shared else 1.0
            w = torch.ones(1, n, dtype=torch.float64) if coef is None else coef[name].sum(1)  # sum_i A[:, i, k]
            ts = [gw.get(name) for gw in grads]
            k = _only_present(ts)
            if k is not None and w.shape[0] == 1:  # one width's gradient times one weight: batched below
                if (s := float(w[0, k]) * scale) != 0.0:
                    for part, value in zip(solo, (name, ts[k], s)):
                        part.append(value)
            elif (merged := _combine(ts, w * scale)) is not None:
                out[name] = merged
        if solo[0]:
            out.update(zip(solo[0], torch._foreach_mul(solo[1], solo[2])))
    return {name: out[name] for name in names if name in out}


def merge(grads: Grads, used: list[set[str]] | None = None, shared_rule: str = "sum") -> dict[str, torch.Tensor]:
    """Mean over the n widths for parameters every width uses, sum over the widths for the others
    (``shared_rule="sum"``: every parameter summed, as gradients accumulated by backward would be).

    ``used`` defaults to ``usage(grads)``; after a vector-level projection pass the *original* usage
    (``ProjectionResult.used``), since projection can write into parameters a width does not use. Parameters no
    width has a gradient for are left out. The returned tensors are new (never the inputs)."""
    return _merge(grads, usage(grads) if used is None else used, None, shared_rule)


@dataclass
class ProjectionResult:
    granularity: str
    order: list[list[int]]  # order[i]: the widths g_i was projected onto, in turn
    used: list[set[str]]  # per width, from the original gradients (what ``merge`` needs)
    pairs_checked: int  # (i, j, group) checks where both g_i and g_j are nonzero on the group
    num_conflicts: int  # of those, the ones with <g_i', g_j> < 0, i.e. projected
    conflict_share: dict[tuple[int, int], float]  # per ordered pair (i, j): conflicts / checks
    coef: dict[str, torch.Tensor] = field(repr=False)  # name -> (rows, n, n): g_i' = sum_k coef[:, i, k] g_k
    originals: Grads = field(repr=False)

    @property
    def conflict_fraction(self) -> float:
        return self.num_conflicts / self.pairs_checked if self.pairs_checked else 0.0

    @cached_property
    def grads(self) -> Grads:
        """Projected per-width gradients; an entry no projection touched is the original tensor (not a copy)."""
        n = len(self.originals)
        out = []
        with torch.no_grad():
            for i, gw in enumerate(self.originals):
                pw = {}
                for name, c in self.coef.items():
                    row = c[:, i, :]
                    if bool((row[:, torch.arange(n) != i] == 0).all()):
                        if gw.get(name) is not None:
                            pw[name] = gw[name]
                    else:
                        pw[name] = _combine([g.get(name) for g in self.originals], row)
                out.append(pw)
        return out

    def merged(self, shared_rule: str = "sum") -> dict[str, torch.Tensor]:
        """Same as ``merge(self.grads, self.used, shared_rule)`` in one weighted sum per parameter, without the
        per-width copies."""
        return _merge(self.originals, self.used, self.coef, shared_rule)


def project_conflicts(grads: Grads, *, granularity: str = "vector",
                      generator: torch.Generator | random.Random | None = None,
                      used: list[set[str]] | None = None) -> ProjectionResult:
    """PCGrad over the widths' gradients (see the module doc). ``generator`` (a CPU torch.Generator or a
    random.Random; None = the global ``random`` module) draws the orders; ``used`` overrides ``usage(grads)``
    for the merge, e.g. when unused parameters carry zero-filled gradients."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {', '.join(GRANULARITIES)}")
    if not grads:
        raise ValueError("need at least one width's gradients")
    n, names = len(grads), _names(grads)
    with torch.no_grad():
        pieces: list[torch.Tensor | None] = []  # per parameter, (rows, n, n), ends as float64 on the CPU
        sizes, buf, on_device = [], [torch.empty(0)], []
        solo: list[tuple[int, int, torch.Tensor]] = []  # (piece index, width, gradient)
        for name in names:
            ts = [gw.get(name) for gw in grads]
            first = next((t for t in ts if t is not None), None)
            rows = 1 if first is None else _rows(first, granularity)
            if first is None:
                pieces.append(torch.zeros(1, n, n, dtype=torch.float64))
            elif (k := _only_present(ts)) is not None and rows == 1:
                solo.append((len(pieces), k, first))
                pieces.append(None)  # from the batched norms below
            else:
                on_device.append(len(pieces))
                pieces.append(_gram(ts, rows, buf))
            sizes.append(rows)
        # One transfer each: the decisions below run on the CPU, in float64.
        if on_device:
            moved = torch.cat([pieces[i] for i in on_device]).double().cpu()
            for i, piece in zip(on_device, moved.split([pieces[i].shape[0] for i in on_device])):
                pieces[i] = piece
        if solo:
            sq_norms = (torch.stack(torch._foreach_norm([t for _, _, t in solo])).double() ** 2).cpu()
            for (i, k, _), sq in zip(solo, sq_norms):
                pieces[i] = torch.zeros(1, n, n, dtype=torch.float64)
                pieces[i][0, k, k] = sq
        gram = torch.cat(pieces) if pieces else torch.zeros(0, n, n, dtype=torch.float64)
        if granularity == "vector":
            gram = gram.sum(0, keepdim=True)
        elif granularity == "tensor":
            gram = torch.stack([p.sum(0) for p in gram.split(sizes)])
        order = _orders(n, generator)
        coef, fired = _pcgrad_coefficients(gram, order)
    if granularity == "vector":
        per_name = {name: coef for name in names}
    else:
        per_name = dict(zip(names, coef.split(sizes if granularity == "kernel" else 1)))
    nonzero = gram.diagonal(dim1=1, dim2=2) > 0
    checked = (nonzero[:, :, None] & nonzero[:, None, :]).sum(0)
    conflicts = (fired & nonzero[:, :, None] & nonzero[:, None, :]).sum(0)
    share = {(i, j): int(conflicts[i, j]) / int(checked[i, j]) if checked[i, j] else 0.0
             for i in range(n) for j in range(n) if i != j}
    off = ~torch.eye(n, dtype=torch.bool)
    return ProjectionResult(granularity=granularity, order=order, used=usage(grads) if used is None else used,
                            pairs_checked=int(checked[off].sum()), num_conflicts=int(conflicts[off].sum()),
                            conflict_share=share, coef=per_name, originals=grads)
