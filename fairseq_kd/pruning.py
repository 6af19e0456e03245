"""Magnitude pruning (See, Luong & Manning 2016; used by Kim & Rush 2016 section 5.2). Pure functions
over {name: tensor} dicts; masks are bool tensors, True = kept.

A *class* is one weight matrix (See et al.'s classes: each embedding, each LSTM layer's input and
recurrent matrices, attention, output projection). Prunable by default: every parameter with two or
more dimensions (embeddings included); biases too with `prune_biases`; parameters whose name matches the
`exclude` regular expression (re.search) stay dense, e.g. "embed_tokens" keeps the embeddings whole.

    class-blind         one threshold over all prunable weights: the round(r * N) smallest |w| go
    class-uniform       the same ratio r inside every class
    class-distribution  per class c the threshold lambda * std(w_c), one lambda for all classes,
                        chosen (bisection) so that the overall pruned fraction is r
Gradual schedule (Zhu & Gupta 2017): sparsity at update u is r * (1 - (1 - (u - u0) / n)^3) for
u0 <= u <= u0 + n, then r.
"""
import re
from typing import Dict, Iterable, Optional, Pattern, Tuple

import torch

from .errors import FairseqKDError

SCHEMES = ("class-blind", "class-uniform", "class-distribution")


def check_ratio(ratio: float):
    if not 0.0 <= ratio < 1.0:
        raise FairseqKDError(f"--prune-ratio must be in [0, 1), got {ratio}")


def check_scheme(scheme: str):
    if scheme not in SCHEMES:
        raise FairseqKDError(f"--prune-scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")


def check_exclude(exclude: Optional[str]) -> Optional[Pattern]:
    """The compiled --prune-exclude expression (None: nothing excluded)."""
    if not exclude:
        return None
    try:
        return re.compile(exclude)
    except re.error as e:
        raise FairseqKDError(f"--prune-exclude is not a valid regular expression ({e}): {exclude!r}")


def prunable(named: Iterable[Tuple[str, torch.Tensor]], prune_biases: bool = False,
             exclude: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The tensors pruning applies to, by name (floating point; matrices, and biases if asked; not those
    whose name matches `exclude`)."""
    pattern = check_exclude(exclude)
    out, excluded = {}, []
    for name, t in named:
        if not torch.is_floating_point(t):
            continue
        if t.dim() >= 2 or (prune_biases and t.dim() == 1 and "bias" in name):
            if pattern is not None and pattern.search(name):
                excluded.append(name)
            else:
                out[name] = t
    if not out and excluded:
        raise FairseqKDError(f"--prune-exclude {exclude!r} matches every prunable weight ({', '.join(excluded)})")
    return out


def _kth_smallest_threshold(values: torch.Tensor, k: int) -> torch.Tensor:
    """Mask (True = keep) that drops exactly the k smallest entries of |values| (ties by position)."""
    flat = values.detach().abs().flatten().float()
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        keep[torch.sort(flat, stable=True).indices[:k]] = False
    return keep.view_as(values)


def class_blind_masks(weights: Dict[str, torch.Tensor], ratio: float) -> Dict[str, torch.Tensor]:
    names = list(weights)
    flat = torch.cat([weights[n].detach().flatten().float() for n in names])
    keep = _kth_smallest_threshold(flat, int(round(ratio * flat.numel())))
    masks, offset = {}, 0
    for n in names:
        size = weights[n].numel()
        masks[n] = keep[offset:offset + size].view_as(weights[n])
        offset += size
    return masks


def class_uniform_masks(weights: Dict[str, torch.Tensor], ratio: float) -> Dict[str, torch.Tensor]:
    return {n: _kth_smallest_threshold(w, int(round(ratio * w.numel()))) for n, w in weights.items()}


def class_distribution_masks(weights: Dict[str, torch.Tensor], ratio: float, iterations: int = 60):
    stds = {n: w.detach().float().std().item() for n, w in weights.items()}
    total = sum(w.numel() for w in weights.values())
    absw = {n: w.detach().abs().float() for n, w in weights.items()}

    def pruned_fraction(lam):
        return sum(int((absw[n] < lam * stds[n]).sum()) for n in weights) / total

    lo, hi = 0.0, 1.0
    while pruned_fraction(hi) < ratio and hi < 1e6:
        hi *= 2
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if pruned_fraction(mid) < ratio else (lo, mid)
    lam = hi if abs(pruned_fraction(hi) - ratio) < abs(pruned_fraction(lo) - ratio) else lo
    return {n: ~(absw[n] < lam * stds[n]) for n in weights}


def compute_masks(weights: Dict[str, torch.Tensor], ratio: float, scheme: str) -> Dict[str, torch.Tensor]:
    check_ratio(ratio)
    check_scheme(scheme)
    if ratio == 0.0:
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    return {"class-blind": class_blind_masks, "class-uniform": class_uniform_masks,
            "class-distribution": class_distribution_masks}[scheme](weights, ratio)


@torch.no_grad()
def apply_masks(tensors: Dict[str, torch.Tensor], masks: Dict[str, torch.Tensor]):
    for name, mask in masks.items():
        t = tensors[name]
        t.masked_fill_(~mask.to(t.device), 0)


def cubic_sparsity(update: int, start: int, steps: int, ratio: float) -> float:
    if update < start:
        return 0.0
    if steps <= 0 or update >= start + steps:
        return ratio
    return ratio * (1.0 - (1.0 - (update - start) / steps) ** 3)


def sparsity_table(masks: Dict[str, torch.Tensor]) -> str:
    rows = [f"{'class':<60} {'weights':>10} {'pruned':>10} {'sparsity':>9}"]
    total = pruned = 0
    for name, m in masks.items():
        n, p = m.numel(), int((~m).sum())
        total, pruned = total + n, pruned + p
        rows.append(f"{name:<60} {n:>10} {p:>10} {p / n:>9.2%}")
    rows.append(f"{'all prunable weights':<60} {total:>10} {pruned:>10} {pruned / max(total, 1):>9.2%}")
    return "\n".join(rows)


def overall_sparsity(masks: Dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int((~m).sum()) for m in masks.values()) / max(total, 1)
