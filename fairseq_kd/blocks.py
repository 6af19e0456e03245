"""Sequence blocking: split target positions into blocks, score each block, turn scores into weights.

Pure tensor functions (B x T batches, padding masked) used by the `block_kd` criterion.

Blocks (over the gold target under teacher forcing; EOS is always a block of its own):
    fixed   a new block every `size` tokens
    word    a new block at every word start: a sentencepiece piece beginning with U+2581, or a token
            following one that does not end in the BPE continuation marker "@@"
    punct   a block ends after each punctuation token (the punctuation belongs to the block it closes)
Scores per block b (tokens t in b, gold tokens y_t):
    teacher-gold  exp(mean_t log p_T(y_t))        geometric mean of the teacher's gold-token probability
    teacher-max   exp(mean_t log max_v p_T(v))    how peaked the teacher is, right or wrong
    student-ce    mean_t -log p_S(y_t)            (detached) Wang et al. 2021's difficulty score
Weights per block: see `block_weights` and `select_blocks`.
"""
import string
from typing import Optional

import torch
from torch import Tensor

WORD_START = "\u2581"
PUNCTUATION = set(string.punctuation) | set("„“”«»‚‘’…–—")


def symbol_flags(symbols, specials):
    """Per-vocabulary flags: (starts a word, is punctuation, ends with the BPE continuation marker)."""
    starts, punct, cont = [], [], []
    for i, sym in enumerate(symbols):
        bare = sym.lstrip(WORD_START)
        starts.append(sym.startswith(WORD_START) or i in specials)
        punct.append(bool(bare) and all(ch in PUNCTUATION for ch in bare.replace("@@", "")))
        cont.append(sym.endswith("@@"))
    as_tensor = lambda xs: torch.tensor(xs, dtype=torch.bool)  # noqa: E731
    return as_tensor(starts), as_tensor(punct), as_tensor(cont)


def block_starts(target: Tensor, mode: str, size: int, eos: int, word_start: Tensor = None,
                 is_punct: Tensor = None, continues: Tensor = None) -> Tensor:
    """B x T bool: True where a new block begins."""
    bsz, tlen = target.shape
    first = torch.zeros_like(target, dtype=torch.bool)
    first[:, 0] = True
    is_eos = target.eq(eos)
    prev_eos = torch.cat([first[:, :1], is_eos[:, :-1]], dim=1) & ~first
    if mode == "fixed":
        pos = torch.arange(tlen, device=target.device).expand(bsz, tlen)
        starts = pos.remainder(size).eq(0)
    elif mode == "word":
        by_marker = word_start.to(target.device)[target]
        prev_continues = torch.cat([first[:, :1] & False, continues.to(target.device)[target[:, :-1]]], dim=1)
        # a vocabulary with "@@" markers starts words after non-continued tokens; else by U+2581
        starts = ~prev_continues if bool(continues.any()) else by_marker
    elif mode == "punct":
        punct = is_punct.to(target.device)[target]
        starts = torch.cat([first[:, :1], punct[:, :-1]], dim=1)
    else:
        raise ValueError(f"unknown block mode {mode!r}")
    return starts | first | is_eos | prev_eos


def block_ids(starts: Tensor) -> Tensor:
    """B x T block index of each position (0-based within its sentence)."""
    return starts.long().cumsum(dim=1) - 1


def block_reduce(values: Tensor, ids: Tensor, mask: Tensor):
    """Mean of `values` over each block. Returns (per-block mean B x T, per-block token count B x T);
    block slots beyond a sentence's last block have count 0."""
    values = values.float().masked_fill(~mask, 0.0)
    sums = torch.zeros_like(values).scatter_add_(1, ids, values)
    counts = torch.zeros_like(values).scatter_add_(1, ids, mask.float())
    return sums / counts.clamp(min=1.0), counts


def block_weights(scores: Tensor, exists: Tensor, weighting: str, threshold: float = 0.0,
                  temperature: float = 1.0) -> Tensor:
    """Per-block weights (B x T block slots) from per-block scores.

    confidence  w_b = s_b
    softmax     w_b = n * softmax_b(s_b / tau) over the sentence's n blocks (mean weight 1)
    hard        w_b = 1
    then every block with s_b < threshold gets w_b = 0.
    """
    if weighting == "confidence":
        w = scores.clone()
    elif weighting == "softmax":
        logits = (scores / temperature).masked_fill(~exists, float("-inf"))
        w = torch.softmax(logits, dim=1) * exists.sum(dim=1, keepdim=True)
    elif weighting == "hard":
        w = torch.ones_like(scores)
    else:
        raise ValueError(f"unknown block weighting {weighting!r}")
    w = torch.where(scores < threshold, torch.zeros_like(w), w)
    return w.masked_fill(~exists, 0.0)


def select_blocks(scores: Tensor, exists: Tensor, rate: float, level: str,
                  queue: Optional["ScoreQueue"] = None) -> Tensor:
    """1 for the blocks with the highest scores, 0 for the rest (Wang et al. 2021, selective KD).

    sentence  the top round(rate * n_b) blocks of each sentence
    batch     the top round(rate * N) of the N blocks in the batch
    global    blocks scoring at least the (1 - rate) quantile of the last `queue.size` block scores
    Ties are broken by position (stable sort), so the selection is deterministic.
    """
    selected = torch.zeros_like(scores)
    if level == "sentence":
        order = torch.sort(scores.masked_fill(~exists, float("-inf")), dim=1, descending=True, stable=True).indices
        k = torch.round(rate * exists.sum(dim=1).float()).long()
        rank = torch.arange(scores.size(1), device=scores.device).expand_as(scores)
        selected.scatter_(1, order, (rank < k.unsqueeze(1)).float())
    elif level == "batch":
        flat = scores.masked_select(exists)
        k = int(round(rate * flat.numel()))
        keep = torch.zeros_like(flat)
        keep[torch.sort(flat, descending=True, stable=True).indices[:k]] = 1.0
        selected.masked_scatter_(exists, keep)
    elif level == "global":
        threshold = queue.push_and_threshold(scores.masked_select(exists), rate)
        selected = scores.ge(threshold).float()
    else:
        raise ValueError(f"unknown selection level {level!r}")
    return selected.masked_fill(~exists, 0.0)


class ScoreQueue:
    """FIFO of the most recent block scores; its (1 - rate) quantile is the global selection threshold."""

    def __init__(self, size: int):
        self.size = size
        self.values = torch.empty(0)

    def push_and_threshold(self, scores: Tensor, rate: float) -> float:
        self.values = torch.cat([self.values, scores.detach().float().cpu()])[-self.size:]
        if rate <= 0.0:
            return float("inf")
        return torch.quantile(self.values, 1.0 - rate).item()


def token_weights(block_w: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
    """Each position gets the weight of its block; padding gets 0."""
    return block_w.gather(1, ids).masked_fill(~mask, 0.0)
