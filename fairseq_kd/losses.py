"""Distillation loss math: small pure functions, tensors in, tensors out. No fairseq state.

Notation (Hinton et al. 2015; Kim & Rush 2016): for a target position with vocabulary V,
    p^(T) = softmax(z / T)            tempered distribution of logits z
    KL(p_T || p_S) = sum_v p_T(v) (log p_T(v) - log p_S(v))
Word-level KD per token (Kim & Rush eq. 4 with Hinton's temperature):
    L = (1 - a) * NLL_eps(gold) + a * T^2 * KL(p_T^(T) || p_S^(T))
where NLL_eps is fairseq's label-smoothed NLL. The T^2 factor keeps the gradient scale of the soft
term independent of T (Hinton et al. 2015, section 2).
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss


def tempered_log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(z / T) over the last dim, in fp32."""
    return F.log_softmax(logits.float() / temperature, dim=-1)


def ensemble_probs(logits: Sequence[Tensor], temperature: float) -> Tensor:
    """Teacher ensemble: the mean of the members' tempered probabilities, (1/M) sum_m softmax(z_m / T)."""
    probs = [F.softmax(z.float() / temperature, dim=-1) for z in logits]
    return torch.stack(probs, dim=0).mean(dim=0) if len(probs) > 1 else probs[0]


def ensemble_topk_log_probs(logits: Sequence[Tensor], k: int) -> Tuple[Tensor, Tensor]:
    """(ids, log-probabilities) of the k most probable entries of the ensemble at T = 1, both ... x k.

    One member: log softmax(z)[ids] = z[ids] - logsumexp(z), with the ids the top k of the logits (softmax keeps
    their order), so no V-wide probability tensor is made; an ensemble: the top k of the mean probabilities."""
    if len(logits) == 1:
        z = logits[0].float()
        values, ids = z.topk(k, dim=-1)
        return ids, values - z.logsumexp(dim=-1, keepdim=True)
    values, ids = ensemble_probs(logits, 1.0).topk(k, dim=-1)
    return ids, values.clamp_min(1e-30).log()


def kl_divergence(teacher_probs: Tensor, student_log_probs: Tensor) -> Tensor:
    """sum_v p_T(v) (log p_T(v) - log p_S(v)) over the last dim; 0 log 0 = 0.

    Works on the full vocabulary or on any subset of entries given in the same order for both
    (the top-k cache gathers the student's log-probs at the teacher's k ids).
    """
    return (torch.xlogy(teacher_probs, teacher_probs) - teacher_probs * student_log_probs).sum(dim=-1)


def soft_target_loss(teacher_probs: Tensor, student_log_probs: Tensor, temperature: float,
                     teacher_ids: Tensor = None) -> Tensor:
    """T^2 * KL(p_T^(T) || p_S^(T)) per position.

    teacher_probs: ... x K tempered teacher probabilities; K = V, or the k entries at `teacher_ids`.
    student_log_probs: ... x V, `tempered_log_probs(student_logits, T)` (at T = 1 the student's log-probs).
    """
    if teacher_ids is not None:
        student_log_probs = student_log_probs.gather(-1, teacher_ids)
    return temperature ** 2 * kl_divergence(teacher_probs.float(), student_log_probs)


def gold_nll(student_log_probs: Tensor, target: Tensor, epsilon: float, padding_idx: int):
    """fairseq's label-smoothed NLL per position (0 at padding): returns (smoothed, plain), both shaped like target."""
    lprobs = student_log_probs.view(-1, student_log_probs.size(-1))
    smoothed, nll = label_smoothed_nll_loss(lprobs, target.reshape(-1), epsilon, ignore_index=padding_idx, reduce=False)
    return smoothed.view_as(target), nll.view_as(target)


def fused_sparse_word_kd(student_log_probs: Tensor, target: Tensor, teacher_ids: Tensor, teacher_probs: Tensor,
                         alpha: float, epsilon: float, padding_idx: int):
    """(1 - a) * NLL_eps(gold) + a * KL(p_T || p_S) per position at T = 1, with the teacher given as k entries
    (ids, probabilities): the same value as `interpolate(gold_nll(...)[0], soft_target_loss(..., teacher_ids), a)`,
    but both sparse terms read the student through one gather, so the backward scatters into the vocabulary
    once instead of twice. Returns (loss, plain NLL, KL) per position, 0 at padding; only `loss` has a gradient.
    """
    n_vocab = student_log_probs.size(-1)
    eps_i = epsilon / (n_vocab - 1)
    ids = torch.cat([target.unsqueeze(-1), teacher_ids], dim=-1)
    picked = student_log_probs.gather(-1, ids)
    p = teacher_probs.float()
    weights = torch.cat([torch.full_like(picked[..., :1], (1.0 - alpha) * (1.0 - epsilon - eps_i)), alpha * p], dim=-1)
    teacher_neg_entropy = torch.xlogy(p, p).sum(dim=-1)
    loss = -(weights * picked).sum(dim=-1) + alpha * teacher_neg_entropy
    if epsilon > 0 and alpha < 1.0:
        loss = loss - (1.0 - alpha) * eps_i * student_log_probs.sum(dim=-1)
    pad = target.eq(padding_idx)
    with torch.no_grad():
        nll = -picked[..., 0]
        kl = teacher_neg_entropy - (p * picked[..., 1:]).sum(dim=-1)
    return loss.masked_fill(pad, 0.0), nll.masked_fill(pad, 0.0), kl.masked_fill(pad, 0.0)


def interpolate(gold_term: Tensor, soft_term: Tensor, alpha: float) -> Tensor:
    """(1 - a) * gold + a * soft. a = 0 and a = 1 drop the other term exactly (no 0 * inf)."""
    if alpha == 0.0:
        return gold_term
    if alpha == 1.0:
        return soft_term
    return (1.0 - alpha) * gold_term + alpha * soft_term

