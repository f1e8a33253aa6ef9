r"""All-ranking top-K metrics with seen items masked.

For a user :math:`u` with held-out positives :math:`T_u` and top-:math:`K` list
:math:`R_u` (items seen in training, and at test time in validation, are excluded):

.. math::
    \mathrm{Recall@K} = \frac{|R_u \cap T_u|}{|T_u|},\quad
    \mathrm{Precision@K} = \frac{|R_u \cap T_u|}{K},\quad
    \mathrm{HitRate@K} = [\,|R_u \cap T_u| > 0\,],

.. math::
    \mathrm{NDCG@K} = \frac{\sum_{r=1}^{K} [R_u(r) \in T_u] / \log_2(r+1)}
                           {\sum_{r=1}^{\min(K, |T_u|)} 1/\log_2(r+1)},

averaged over users with :math:`|T_u| > 0`. Users are scored in chunks sized to a memory
budget; masking and top-K stay on the scores' device.

Speed: the top-K of a score row is found blockwise (:func:`topk_indices`) — the row's
block maxima select the only blocks that can hold its top K entries, and the exact top-K is
taken among those — so that ranking costs one extra read of the scores instead of a full
selection; hits are looked up in the sorted pair index of the held-out positives
(:class:`~pyg_cf.data.pairs.UserItemIndex`), not in a dense target matrix.
"""

from __future__ import annotations

import logging
import math
import numbers
import weakref
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from pyg_cf.data.pairs import UserItemIndex, check_pairs
from pyg_cf.errors import ConfigError, PygCFError

__all__ = [
    "evaluate",
    "evaluate_scores",
    "mask_seen",
    "ranking_metrics_from_hits",
    "topk_indices",
]

log = logging.getLogger(__name__)

TOPK_BLOCK = 64


def mask_seen(
    scores: Tensor, users: Tensor, seen: Tensor | UserItemIndex, value: float = float("-inf")
) -> Tensor:
    """Set ``scores[r, i] = value`` in place for every item ``i`` seen by ``users[r]``."""
    if isinstance(seen, Tensor):
        n = max(
            int(seen[0].max()) + 1 if seen.numel() else 0,
            int(users.max()) + 1 if users.numel() else 0,
        )
        seen = UserItemIndex(seen, n, scores.size(1))
    row, col = seen.gather(users)
    scores[row, col] = value
    return scores


def topk_indices(scores: Tensor, k: int, block: int = TOPK_BLOCK) -> Tensor:
    r"""Column indices of the ``k`` largest entries of each row of ``scores``, sorted by
    decreasing score (the same set as :func:`torch.topk`, up to the order of ties).

    Each row is cut into blocks of ``block`` columns. If an entry of the row's top ``k``
    lies in a block ranked :math:`r`-th by block maximum, the :math:`r-1` larger block
    maxima and that entry are :math:`r` distinct entries at least as large as the
    :math:`k`-th largest value, so :math:`r \le k`: the top ``k`` lie in the ``k`` blocks
    with the largest maxima (plus the ragged tail, always kept). Costs one pass over
    ``scores`` for the block maxima and a top-``k`` over ``k * block`` candidates per row.

    Args:
        scores: ``[C, N]`` scores.
        k: Number of entries per row (at most ``N``).
        block: Block width.

    Returns:
        ``[C, k]`` column indices.
    """
    c, n = scores.shape
    nb = n // block
    if nb <= k or c == 0:
        return scores.topk(k, dim=1).indices
    m = nb * block
    main = scores[:, :m].unflatten(1, (nb, block))  # a view, no copy
    top_blocks = main.amax(dim=2).topk(k, dim=1).indices  # [C, k]
    if scores.is_contiguous() and m == n:
        rows = torch.arange(c, device=scores.device).unsqueeze(1) * nb
        cand = scores.view(c * nb, block).index_select(0, (rows + top_blocks).view(-1))
    else:
        cand = main.gather(1, top_blocks.unsqueeze(2).expand(c, k, block))
    cand = cand.view(c, k * block)
    if m < n:
        cand = torch.cat([cand, scores[:, m:]], dim=1)
    pos = cand.topk(k, dim=1).indices
    in_main = pos < k * block
    col_main = top_blocks.gather(1, (pos // block).clamp(max=k - 1)) * block + pos % block
    return torch.where(in_main, col_main, pos - k * block + m)


def ranking_metrics_from_hits(
    hits: Tensor, num_pos: Tensor, ks: int | Sequence[int]
) -> dict[str, Tensor]:
    """Per-user metrics from a ``[U, K_max]`` 0/1 hit matrix and ``[U]`` positive counts."""
    hits = hits.float()
    kmax = hits.size(1)
    ks = check_ks(ks, kmax, "the hit matrix's width")
    disc = 1.0 / torch.log2(torch.arange(2, kmax + 2, device=hits.device, dtype=torch.float))
    out: dict[str, Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        nh = h.sum(1)
        out[f"recall@{k}"] = nh / num_pos.clamp(min=1)
        out[f"precision@{k}"] = nh / k
        out[f"hitrate@{k}"] = (nh > 0).float()
        dcg = (h * disc[:k]).sum(1)
        idcg = torch.cumsum(disc[:k], 0)[(num_pos.clamp(min=1, max=k) - 1).long()]
        out[f"ndcg@{k}"] = dcg / idcg
    return out


# memory for one chunk of scores when none is given, and the most users per chunk: on the
# CPU chunks beyond ~1k users stop paying off; on a GPU each chunk costs a dozen kernel
# launches, so fewer, larger chunks win (Gowalla on an H200: benchmarks/results/bench_eval_gpu.md)
_DEFAULT_BUDGET_MB = {"cpu": 256.0, "cuda": 1024.0}
_MAX_CHUNK = {"cpu": 1024, "cuda": 8192}


def check_ks(ks: int | Iterable[int], limit: int, what: str) -> list[int]:
    """``ks`` as a list of ``int``; a :class:`ConfigError` unless it is an integer or a
    non-empty iterable (a list, a NumPy array, ...) of integers in ``[1, limit]``."""
    items: list[object] = []  # stays empty (refused) unless ks is an int or an iterable
    if isinstance(ks, numbers.Integral) and not isinstance(ks, bool):
        items = [ks]
    elif isinstance(ks, Iterable) and not isinstance(ks, (str, bytes)):
        items = list(ks)
    ok = bool(items) and all(
        isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= int(k) <= limit
        for k in items
    )
    if not ok:
        raise ConfigError(f"ks must be positive integers at most {what} ({limit}), got {ks!r}")
    return [int(k) for k in items if isinstance(k, numbers.Integral)]


def _check_chunk_size(chunk_size: int | None) -> None:
    """A :class:`ConfigError` unless ``chunk_size`` is ``None`` or an integer ``>= 1``."""
    if chunk_size is not None and (
        not isinstance(chunk_size, numbers.Integral)
        or isinstance(chunk_size, bool)
        or chunk_size < 1
    ):
        raise ConfigError(f"chunk_size must be an integer >= 1 or None, got {chunk_size!r}")


def _check_memory_budget(memory_budget_mb: float | None) -> None:
    """A :class:`ConfigError` unless ``memory_budget_mb`` is ``None`` or a finite number
    ``> 0``."""
    if memory_budget_mb is not None and (
        not isinstance(memory_budget_mb, numbers.Real)
        or isinstance(memory_budget_mb, bool)
        or not math.isfinite(memory_budget_mb)
        or memory_budget_mb <= 0
    ):
        raise ConfigError(
            f"memory_budget_mb must be a finite number > 0 or None, got {memory_budget_mb!r}"
        )


def _chunk_size(
    memory_budget_mb: float | None, num_items: int, device: torch.device | str = "cpu"
) -> int:
    """Users per chunk: one float32 score row per user (plus slack for the top-K
    candidates) within ``memory_budget_mb`` (``None``: the device's default), capped where
    larger chunks stop paying off on that device."""
    _check_memory_budget(memory_budget_mb)
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    budget = _DEFAULT_BUDGET_MB[kind] if memory_budget_mb is None else memory_budget_mb
    return max(1, min(_MAX_CHUNK[kind], int(budget * 2**20 / (num_items * 5))))


def positive_index(
    positives: Tensor,
    num_users: int,
    num_items: int,
    caller: str,
    device: torch.device | str | None = None,
) -> UserItemIndex:
    """The index of the held-out pairs :math:`T_u`, each ``(user, item)`` pair once:
    :math:`T_u` is a set, and a repeated pair would count twice in :math:`|T_u|` but could
    only be hit once. A repeat is logged (once per ``caller`` and source), never an error.
    The index is on ``device`` (``positives``' own when ``None``), cached for the source
    tensor with the check for repeats, so an evaluation every few epochs repeats neither."""
    dev = positives.device if device is None else torch.device(device)
    pos = UserItemIndex.cached_on(positives, dev, num_users, num_items)
    if pos not in _DEDUPED:
        unique: UserItemIndex | None = None
        if pos.keys.numel() > 1 and bool((pos.keys[1:] == pos.keys[:-1]).any()):
            pairs = torch.unique(positives.to(dev), dim=1)
            unique = UserItemIndex(pairs, num_users, num_items)
        _DEDUPED[pos] = (unique, positives.size(1), set())
    unique, total, warned = _DEDUPED[pos]
    if unique is None:
        return pos
    if caller not in warned:
        warned.add(caller)
        log.warning(
            "%s: positives repeat %d (user, item) pair(s); each is counted once",
            caller,
            total - unique.keys.numel(),
        )
    return unique


# per cached index of held-out pairs: its deduplicated index (``None``: no repeats), the
# number of pairs given and the callers already warned (weak keys: entries go with the index)
_DEDUPED: weakref.WeakKeyDictionary[UserItemIndex, tuple[UserItemIndex | None, int, set[str]]]
_DEDUPED = weakref.WeakKeyDictionary()


def masked_hits(
    pos: UserItemIndex, masks: Sequence[UserItemIndex], users: Tensor, top: Tensor, n: int
) -> Tensor:
    """``[C, k]`` hits of the ranked ``top`` items: held-out positives of ``users`` that are
    real items (column ``< n``, not padding) and not masked. When ``k`` exceeds a user's
    unmasked items, masked items (score ``-inf``) fill the rest of its list; a positive
    among them (a test pair that is also a validation pair) was never recommended."""
    rows = users.unsqueeze(1)
    hits = pos.contains(rows, top) & (top < n)
    for m in masks:
        hits &= ~m.contains(rows, top)
    return hits


def score_dtype(scores: Tensor) -> Tensor:
    """``scores`` as they are ranked: ``float32`` and ``float64`` kept (a ``float64``
    model's near-ties stay apart), any other dtype (half, bfloat16, integers) cast to
    ``float32``."""
    if scores.dtype in (torch.float32, torch.float64):
        return scores
    return scores.float()


def nonfinite_top_rows(scores: Tensor, top: Tensor) -> Tensor:
    """``[2]`` counts of the rows of ``scores`` with a NaN, and with a ``+inf``, among their
    ``top`` columns. :func:`torch.topk` ranks NaN first and ``+inf`` next, so a row holding
    either anywhere has it in its top K."""
    val = scores.gather(1, top)
    return torch.stack([val.isnan().any(dim=1).sum(), val.isposinf().any(dim=1).sum()])


def check_finite_rows(bad_rows: Tensor, num_users: int) -> None:
    """Raise if any ranked user had a NaN or a ``+inf`` among its top-K scores
    (``bad_rows``: the summed counts of :func:`nonfinite_top_rows`, a device tensor read
    here once)."""
    nan_rows, inf_rows = (int(c) for c in bad_rows.tolist())
    if nan_rows:
        raise PygCFError(
            f"scores are NaN for {nan_rows} of {num_users} users (diverged or "
            "corrupted embeddings?): their rankings, and so the metrics, would be meaningless"
        )
    if inf_rows:
        raise PygCFError(
            f"scores are +inf for {inf_rows} of {num_users} users (overflowed embeddings, "
            "e.g. in half precision?): items tied at +inf are ranked arbitrarily, so the "
            "metrics would be meaningless"
        )


def check_embedding_pair(
    user_emb: Tensor, item_emb: Tensor, num_users: int, num_items: int
) -> None:
    """Clear errors for user / item embeddings that cannot be ranked against each other:
    not 2-D floating point, different widths, dtypes or devices, or row counts that are not
    the data's ``num_users`` / ``num_items``."""
    for name, emb in (("user_emb", user_emb), ("item_emb", item_emb)):
        if not isinstance(emb, Tensor) or emb.dim() != 2 or not emb.is_floating_point():
            got = (
                f"{emb.dtype} tensor of shape {tuple(emb.shape)}"
                if isinstance(emb, Tensor)
                else type(emb).__name__
            )
            raise ConfigError(f"{name} must be a 2-D floating-point tensor [nodes, dim], got {got}")
    if user_emb.size(1) != item_emb.size(1):
        raise ConfigError(
            f"user and item embeddings differ in width: {user_emb.size(1)} vs {item_emb.size(1)}"
        )
    if user_emb.dtype != item_emb.dtype:
        raise ConfigError(
            f"user and item embeddings differ in dtype: {user_emb.dtype} vs {item_emb.dtype} "
            "(cast both to one)"
        )
    if user_emb.size(0) != num_users or item_emb.size(0) != num_items:
        raise ConfigError(
            f"embeddings are for {user_emb.size(0)} users / {item_emb.size(0)} "
            f"items but the data has {num_users} / {num_items}"
        )
    if user_emb.device != item_emb.device:
        raise ConfigError("user and item embeddings are on different devices")


def evaluate_scores(
    score_fn: Callable[[Tensor], Tensor],
    num_users: int,
    num_items: int,
    positives: Tensor,
    seen: Sequence[Tensor] = (),
    ks: int | Sequence[int] = (20,),
    chunk_size: int | None = None,
    memory_budget_mb: float | None = None,
    device: torch.device | str | None = None,
    per_user: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, Tensor]]:
    """All-ranking metrics for any scoring function.

    Args:
        score_fn: Maps a ``[C]`` tensor of user ids to ``[C, num_items]`` scores (never
            modified: a returned view of the caller's matrix is copied before masking).
            ``float32`` and ``float64`` scores are ranked as they are, other dtypes in
            ``float32``. A user with a NaN or ``+inf`` score is an error.
        num_users: Number of users.
        num_items: Number of items.
        positives: ``[2, E]`` held-out (user, item) pairs to find (a repeated pair counts
            once, with a warning).
        seen: A list of ``[2, E]`` pair sets to mask (training, and validation at test
            time). A masked item is never recommended: a positive that is also masked is
            never a hit, even when a cut-off exceeds the user's unmasked items.
        ks: Cut-offs (one integer, or a list or array of them).
        chunk_size: Users per chunk; derived from ``memory_budget_mb`` when ``None``.
        memory_budget_mb: Memory for one chunk's score and hit matrices (``None``: 256 MB
            on the CPU, 1 GB on a GPU).
        device: Where to run; the device of ``positives`` when ``None``.
        per_user: Also return the per-user metric tensors and the evaluated user ids.

    Returns:
        Mean of each metric over users with at least one positive (keys like
        ``'recall@20'``), and with ``per_user`` a dict of ``[U]`` tensors plus ``'users'``.
    """
    ks = check_ks(ks, num_items, "num_items")
    _check_chunk_size(chunk_size)
    _check_memory_budget(memory_budget_mb)
    if isinstance(seen, Tensor):
        raise ConfigError(
            "seen must be a list of [2, E] tensors, got a single tensor of shape "
            f"{tuple(seen.shape)} (pass [seen])"
        )
    check_pairs(positives, num_users, num_items, "positives")
    for s in seen:
        check_pairs(s, num_users, num_items, "seen")
    if positives.numel() == 0:
        raise ConfigError("positives is empty: no user has a held-out pair to find")
    dev = torch.device(device) if device is not None else positives.device
    # cached per (source tensor, device): evaluating again on another device than the pairs'
    # copies and sorts them once, not at every call
    pos = positive_index(positives, num_users, num_items, "evaluate_scores", dev)
    masks = [UserItemIndex.cached_on(s, dev, num_users, num_items) for s in seen if s.numel()]
    users_all = torch.nonzero(pos.counts > 0).view(-1)
    if chunk_size is None:
        chunk_size = _chunk_size(memory_budget_mb, num_items, dev)
    kmax = max(ks)
    # pyg-cf's own GEMM scorer returns rows padded with -inf columns (see _GemmScores).
    width = int(getattr(score_fn, "padded_width", num_items))
    per: dict[str, list[Tensor]] = {}
    bad_rows = torch.zeros(2, dtype=torch.long, device=dev)  # read once, after the loop
    for start in range(0, users_all.numel(), chunk_size):
        users = users_all[start : start + chunk_size]
        raw = score_fn(users)
        if raw.shape != (users.numel(), width):
            raise ConfigError(
                f"score_fn returned shape {tuple(raw.shape)}, expected ({users.numel()}, {width})"
            )
        scores = score_dtype(raw.to(dev))
        if scores.data_ptr() == raw.data_ptr() and not getattr(score_fn, "scratch", False):
            scores = scores.clone()  # the masking writes in place: never into the caller's
        for m in masks:
            mask_seen(scores, users, m)
        top = topk_indices(scores, kmax)
        bad_rows += nonfinite_top_rows(scores, top)
        hits = masked_hits(pos, masks, users, top, num_items)
        for key, val in ranking_metrics_from_hits(hits, pos.counts[users], ks).items():
            per.setdefault(key, []).append(val)
    check_finite_rows(bad_rows, users_all.numel())
    cat = {k: torch.cat(v) for k, v in per.items()}
    means = {k: float(v.mean()) if v.numel() else 0.0 for k, v in cat.items()}
    if per_user:
        cat["users"] = users_all
        return means, cat
    return means


def evaluate(
    user_emb: Tensor,
    item_emb: Tensor,
    data: HeteroData,
    split: str = "test",
    ks: int | Sequence[int] = (20,),
    similarity: str = "ip",
    mask_val_at_test: bool = True,
    chunk_size: int | None = None,
    memory_budget_mb: float | None = None,
) -> dict[str, float]:
    """All-ranking metrics of final embeddings on ``data``'s ``split``.

    Training pairs are always masked; at test time validation pairs too (by default).

    Args:
        user_emb: ``[num_users, d]`` user embeddings.
        item_emb: ``[num_items, d]`` item embeddings.
        data: A pyg-cf data object.
        split: ``'val'`` or ``'test'``.
        ks: Cut-offs (one integer, or a list or array of them).
        similarity: ``'ip'`` (inner product) or ``'cos'`` (cosine) at prediction time.
        mask_val_at_test: Mask validation positives when ``split='test'``.
        chunk_size: Users per chunk (see :func:`evaluate_scores`).
        memory_budget_mb: Memory for one chunk (see :func:`evaluate_scores`).

    Per-user metrics: :func:`evaluate_scores` with ``per_user=True``. The embeddings'
    device is where the ranking runs.
    """
    from pyg_cf.data.graph import held_out_edges, train_edges

    if similarity not in ("ip", "cos"):
        raise ConfigError(f"similarity must be 'ip' or 'cos', got {similarity!r}")
    nu, ni = data["user"].num_nodes, data["item"].num_nodes
    check_embedding_pair(user_emb, item_emb, nu, ni)
    u, i = user_emb.detach(), item_emb.detach()
    if similarity == "cos":
        u, i = F.normalize(u, dim=-1), F.normalize(i, dim=-1)
    seen = [train_edges(data)]
    if split == "test" and mask_val_at_test:
        seen.append(held_out_edges(data, "val"))
    positives = held_out_edges(data, split)
    if positives.numel() == 0:
        raise ConfigError(f"data has no {split} positives")
    _check_chunk_size(chunk_size)
    _check_memory_budget(memory_budget_mb)
    chunk = chunk_size or _chunk_size(memory_budget_mb, ni, u.device)
    res = evaluate_scores(
        _GemmScores(u, i, chunk), nu, ni, positives, seen, ks, chunk, memory_budget_mb, u.device
    )
    assert isinstance(res, dict)
    return res


class _GemmScores:
    """``users -> user_emb[users] @ item_emb.T`` written into one reused buffer whose rows
    are padded to a multiple of the top-K block with ``-inf`` columns (``padded_width``
    wide), so that no chunk allocates and the blockwise top-K reads the buffer in place."""

    # evaluate_scores may mask the returned rows in place (the buffer is ours)
    scratch = True

    def __init__(self, u: Tensor, i: Tensor, chunk_size: int) -> None:
        n = i.size(0)
        width = -(-n // TOPK_BLOCK) * TOPK_BLOCK
        pad = i.new_zeros(width - n, i.size(1))
        self.it = torch.cat([i, pad]).t().contiguous()
        self.u, self.n, self.padded_width = u, n, width
        self.buf = u.new_empty(min(chunk_size, u.size(0)), width)

    def __call__(self, users: Tensor) -> Tensor:
        out = self.buf[: users.numel()]
        torch.mm(self.u[users], self.it, out=out)
        if self.padded_width > self.n:
            out[:, self.n :] = float("-inf")
        return out
