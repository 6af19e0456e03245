"""Batched greedy and beam search with fairseq's rules, over any decoder step (see lstm_step.py).

fairseq's SequenceGenerator spends most of a small model's decode in Python around the model: incremental
state dictionaries, the encoder output reordered at every step, per-step bookkeeping for options a student
never uses. This search keeps its rules, so outputs compare token for token:

- length limits: at most min(max_len_a * padded source length + max_len_b, model limit - 1) tokens before EOS,
  EOS forced at that step; no EOS before --min-len;
- pad never chosen, --unkpen subtracted from <unk>;
- beam: fairseq's BeamSearch step (top 2 x beam candidates of cumulative scores; an EOS among the first
  `beam` candidates finishes a hypothesis; a sentence is done when `beam` hypotheses are finished), scores
  normalised by length ** lenpen, n-best sorted by score;
- finished sentences leave the batch.

Greedy (beam 1) is the same step at one hypothesis per sentence, without the beam bookkeeping: the top of the
log-probabilities plus the cumulative score, formed as fairseq forms it (an argmax of the logits differs where
fairseq's rounding ties two candidates of a long hypothesis).

A step model has three calls: `start(src_tokens, src_lengths, rows_per_sentence) -> state`,
`logits(prev_tokens, state) -> N x V` (advancing the state) and `reorder(state, rows, sentences_left)`
(rows kept, in their new order; sentences_left says whether sentences left the batch or beams only moved).
"""
import math
from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import Tensor


@dataclass
class SearchOptions:
    beam: int = 1
    max_len_a: float = 0.0
    max_len_b: int = 200
    min_len: int = 1
    lenpen: float = 1.0
    unk_penalty: float = 0.0
    normalize_scores: bool = True

    @classmethod
    def from_generation(cls, gen, beam=None):
        """From fairseq's generation config (cfg.generation): the options this search implements."""
        return cls(beam=gen.beam if beam is None else beam, max_len_a=gen.max_len_a, max_len_b=gen.max_len_b,
                   min_len=gen.min_len, lenpen=gen.lenpen, unk_penalty=gen.unkpen,
                   normalize_scores=not gen.unnormalized)


def unsupported_generation_options(gen) -> List[str]:
    """fairseq generation options that change the search and that this search does not implement."""
    checks = [("--sampling", gen.sampling), ("--diverse-beam-groups", gen.diverse_beam_groups > 0),
              ("--diversity-rate", gen.diversity_rate > 0), ("--match-source-len", gen.match_source_len),
              ("--no-repeat-ngram-size", gen.no_repeat_ngram_size > 0), ("--prefix-size", gen.prefix_size > 0),
              ("--constraints", bool(gen.constraints)), ("--temperature", gen.temperature != 1.0),
              ("--lm-path", bool(getattr(gen, "lm_path", None))), ("--retain-dropout", gen.retain_dropout)]
    return [flag for flag, used in checks if used]


def max_length(opts: SearchOptions, src_len: int, model_max: int) -> int:
    max_len = min(int(opts.max_len_a * src_len + opts.max_len_b), model_max - 1)
    if opts.min_len > max_len:
        raise ValueError(f"--min-len {opts.min_len} is larger than the length limit {max_len}")
    return max_len


@torch.no_grad()
def generate(step_model, src_tokens: Tensor, src_lengths: Tensor, opts: SearchOptions, pad: int, eos: int, unk: int,
             model_max: int) -> List[List[Dict[str, Tensor]]]:
    """Hypotheses for each sentence of the batch, in batch order: lists of {"tokens" (ending in EOS), "score"},
    best first, as fairseq's SequenceGenerator returns them."""
    max_len = max_length(opts, src_tokens.size(1), model_max)
    if opts.beam == 1:
        return _greedy(step_model, src_tokens, src_lengths, opts, pad, eos, unk, max_len)
    return _beam(step_model, src_tokens, src_lengths, opts, pad, eos, unk, max_len)


def _mask(scores: Tensor, step: int, opts: SearchOptions, pad: int, eos: int, unk: int, max_len: int):
    scores[:, pad] = -math.inf
    if opts.unk_penalty:
        scores[:, unk] -= opts.unk_penalty
    if step >= max_len:
        scores[:, :eos] = -math.inf
        scores[:, eos + 1:] = -math.inf
    elif step < opts.min_len:
        scores[:, eos] = -math.inf


def _greedy(step_model, src_tokens, src_lengths, opts, pad, eos, unk, max_len):
    """Beam 1 as fairseq's BeamSearch does it: the top of log-probabilities plus the hypothesis's cumulative score.
    (An argmax of the logits picks the same token except where fairseq's float sum rounds two candidates into a tie,
    as long, looping hypotheses do; so the sum is formed as fairseq forms it.)"""
    bsz = src_tokens.size(0)
    state = step_model.start(src_tokens, src_lengths, 1)
    out = torch.full((bsz, max_len + 1), pad, dtype=torch.long)  # by sentence, filled as sentences finish
    rows = out.clone()  # by row of the batch still decoding
    lengths = torch.zeros(bsz, dtype=torch.long)
    final = torch.zeros(bsz)
    alive = torch.arange(bsz)  # original sentence of each row
    prev = torch.full((bsz,), eos, dtype=torch.long)
    score = torch.zeros(bsz, 1)
    for step in range(max_len + 1):
        lprobs = torch.log_softmax(step_model.logits(prev, state), dim=-1)
        _mask(lprobs, step, opts, pad, eos, unk, max_len)
        top_scores, top = torch.topk(lprobs.add_(score), k=min(2, lprobs.size(1) - 1))
        tok, score = top[:, 0], top_scores[:, :1]
        rows[:, step] = tok
        done = tok.eq(eos)
        if bool(done.any()):
            ended = alive[done]
            out[ended] = rows[done]
            lengths[ended] = step + 1
            final[ended] = score[done, 0]
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            alive, tok, score, rows = alive[keep], tok[keep], score[keep], rows[keep]
            step_model.reorder(state, keep)
        prev = tok
    hypos = []
    for i in range(bsz):
        n = int(lengths[i])
        total = final[i] / n ** opts.lenpen if opts.normalize_scores else final[i]
        hypos.append([{"tokens": out[i, :n], "score": total}])
    return hypos


def _beam(step_model, src_tokens, src_lengths, opts, pad, eos, unk, max_len):
    """fairseq's SequenceGenerator._generate with BeamSearch, without the options students do not use."""
    bsz, beam = src_tokens.size(0), opts.beam
    state = step_model.start(src_tokens, src_lengths, beam)
    scores = torch.zeros(bsz * beam, max_len + 1)
    tokens = torch.full((bsz * beam, max_len + 2), pad, dtype=torch.long)
    tokens[:, 0] = eos
    cands_to_ignore = torch.zeros(bsz, beam, dtype=torch.bool)
    finalized: List[List[Dict[str, Tensor]]] = [[] for _ in range(bsz)]
    finished = [False] * bsz
    remaining = bsz
    cand_size = 2 * beam
    bbsz_offsets = (torch.arange(bsz) * beam).unsqueeze(1)
    cand_offsets = torch.arange(cand_size)
    original = torch.arange(bsz)  # original sentence of each sentence still in the batch
    reorder = None
    batch_idxs = None
    for step in range(max_len + 1):
        if reorder is not None:
            if batch_idxs is not None:
                corr = batch_idxs - torch.arange(batch_idxs.numel())
                reorder.view(-1, beam).add_(corr.unsqueeze(-1) * beam)
            step_model.reorder(state, reorder, sentences_left=batch_idxs is not None)
        lprobs = torch.log_softmax(step_model.logits(tokens[:, step], state).float(), dim=-1)
        _mask(lprobs, step, opts, pad, eos, unk, max_len)
        vocab = lprobs.size(1)
        lp = lprobs.view(bsz, beam, vocab)
        if step == 0:
            lp = lp[:, ::beam, :].contiguous()
        else:
            lp = lp + scores.view(bsz, beam, -1)[:, :, step - 1].unsqueeze(-1)
        flat = lp.view(bsz, -1)
        cand_scores, cand_flat = torch.topk(flat, k=min(cand_size, flat.size(1) - 1))
        cand_beams = torch.div(cand_flat, vocab, rounding_mode="trunc")
        cand_indices = cand_flat.fmod(vocab)
        cand_bbsz_idx = cand_beams.add(bbsz_offsets)

        eos_mask = cand_indices.eq(eos) & cand_scores.ne(-math.inf)
        eos_mask[:, :beam][cands_to_ignore] = False
        eos_bbsz_idx = torch.masked_select(cand_bbsz_idx[:, :beam], mask=eos_mask[:, :beam])
        finalized_sents: List[int] = []
        if eos_bbsz_idx.numel() > 0:
            eos_scores = torch.masked_select(cand_scores[:, :beam], mask=eos_mask[:, :beam])
            finalized_sents = _finalize(step, eos_bbsz_idx, eos_scores, tokens, finalized, finished, original, beam,
                                        opts, eos, max_len)
            remaining -= len(finalized_sents)
        if remaining == 0:
            break
        if finalized_sents:  # finished sentences leave the batch
            new_bsz = bsz - len(finalized_sents)
            batch_mask = torch.ones(bsz, dtype=torch.bool)
            batch_mask[finalized_sents] = False
            batch_idxs = torch.arange(bsz).masked_select(batch_mask)
            eos_mask, cand_beams = eos_mask[batch_idxs], cand_beams[batch_idxs]
            bbsz_offsets = bbsz_offsets[:new_bsz]
            cand_bbsz_idx = cand_beams.add(bbsz_offsets)
            cand_scores, cand_indices = cand_scores[batch_idxs], cand_indices[batch_idxs]
            cands_to_ignore = cands_to_ignore[batch_idxs]
            scores = scores.view(bsz, -1)[batch_idxs].view(new_bsz * beam, -1)
            tokens = tokens.view(bsz, -1)[batch_idxs].view(new_bsz * beam, -1)
            original = original[batch_idxs]
            bsz = new_bsz
        else:
            batch_idxs = None

        eos_mask[:, :beam] = ~((~cands_to_ignore) & (~eos_mask[:, :beam]))
        active_mask = torch.add(eos_mask.type_as(cand_offsets) * cand_size, cand_offsets[: eos_mask.size(1)])
        new_cands_to_ignore, active_hypos = torch.topk(active_mask, k=beam, dim=1, largest=False)
        cands_to_ignore = new_cands_to_ignore.ge(cand_size)[:, :beam]
        active_bbsz_idx = torch.gather(cand_bbsz_idx, dim=1, index=active_hypos).view(-1)
        tokens[:, : step + 1] = torch.index_select(tokens[:, : step + 1], dim=0, index=active_bbsz_idx)
        tokens.view(bsz, beam, -1)[:, :, step + 1] = torch.gather(cand_indices, dim=1, index=active_hypos)
        if step > 0:
            scores[:, :step] = torch.index_select(scores[:, :step], dim=0, index=active_bbsz_idx)
        scores.view(bsz, beam, -1)[:, :, step] = torch.gather(cand_scores, dim=1, index=active_hypos)
        reorder = active_bbsz_idx

    for sent in range(len(finalized)):
        order = torch.sort(torch.tensor([float(h["score"]) for h in finalized[sent]]), descending=True)[1]
        finalized[sent] = [finalized[sent][i] for i in order]
    return finalized


def _finalize(step, bbsz_idx, eos_scores, tokens, finalized, finished, original, beam, opts, eos, max_len):
    """Store the hypotheses ending at this step; the rows (in the current batch) of the sentences now done."""
    tokens_clone = tokens.index_select(0, bbsz_idx)[:, 1: step + 2]
    tokens_clone[:, step] = eos
    if opts.normalize_scores:
        eos_scores = eos_scores / (step + 1) ** opts.lenpen
    rows = torch.div(bbsz_idx, beam, rounding_mode="trunc").tolist()
    sents = original[rows].tolist() if rows else []
    for i, sent in enumerate(sents):
        if len(finalized[sent]) < beam:
            finalized[sent].append({"tokens": tokens_clone[i], "score": eos_scores[i]})
    newly = []
    for sent, row in sorted(set(zip(sents, rows))):
        if not finished[sent] and (len(finalized[sent]) == beam or step == max_len):
            finished[sent] = True
            newly.append(row)
    return newly
