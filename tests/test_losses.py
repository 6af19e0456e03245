"""word_kd loss math against fairseq's own criterion and against hand computation."""
import math

import pytest
import torch

from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq_kd.losses import (ensemble_probs, ensemble_topk_log_probs, fused_sparse_word_kd, gold_nll, interpolate,
                               kl_divergence, soft_target_loss, tempered_log_probs)
from fairseq_kd.teacher import Teacher

from helpers import batch, build_model, criterion, sharpen


def word_kd(task, alpha, temperature=1.0, eps=0.0, teachers=()):
    return criterion("word_kd", task, teacher=Teacher(teachers) if teachers else None, kd_alpha=alpha,
                     kd_temperature=temperature, label_smoothing=eps)


def test_alpha_zero_equals_label_smoothed_cross_entropy(tiny_task):
    model = build_model(tiny_task).eval()
    sample = batch(tiny_task)
    ours, ours_size, ours_log = word_kd(tiny_task, alpha=0.0, eps=0.1)(model, sample)
    ref = LabelSmoothedCrossEntropyCriterion(tiny_task, sentence_avg=False, label_smoothing=0.1)
    theirs, theirs_size, theirs_log = ref(model, sample)
    assert ours_size == theirs_size
    assert abs(ours.item() - theirs.item()) < 1e-6 * max(1.0, abs(theirs.item()))
    assert abs(ours_log["nll_loss"].item() - theirs_log["nll_loss"].item()) < 1e-4


def hand_kl(p_rows, q_rows):
    return sum(p * (math.log(p) - math.log(q)) for p, q in zip(p_rows, q_rows) if p > 0)


def softmax_list(z, t):
    m = max(z)
    e = [math.exp((v - m) / t) for v in z]
    return [v / sum(e) for v in e]


def test_soft_target_loss_by_hand_tiny_vocab():
    teacher_logits = [[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]]
    student_logits = [[0.1, 0.2, 0.3], [1.0, -2.0, 0.5]]
    T = 2.0
    probs = ensemble_probs([torch.tensor(teacher_logits)], T)
    got = soft_target_loss(probs, tempered_log_probs(torch.tensor(student_logits), T), T)
    for row in range(2):
        expected = T * T * hand_kl(softmax_list(teacher_logits[row], T), softmax_list(student_logits[row], T))
        assert got[row].item() == pytest.approx(expected, rel=1e-6)


def test_zero_teacher_probability_contributes_nothing():
    p = torch.tensor([[1.0, 0.0, 0.0]])
    q = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert kl_divergence(p, q).item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_criterion_kd_term_by_hand_with_padding(tiny_task):
    """a = 1: the loss is T^2 KL summed over non-padding target tokens only."""
    student, teacher = sharpen(build_model(tiny_task, seed=0).eval()), sharpen(build_model(tiny_task, seed=1).eval())
    sample = batch(tiny_task, n=6)
    target = sample["target"]
    pad = tiny_task.target_dictionary.pad()
    assert target.eq(pad).any(), "the batch must contain padding for this test to mean something"
    T = 3.0
    loss, _, log = word_kd(tiny_task, alpha=1.0, temperature=T, teachers=[teacher])(student, sample)
    with torch.no_grad():
        s_logits = student(**sample["net_input"])[0]
        t_logits = teacher(**sample["net_input"])[0]
    expected = 0.0
    for b in range(target.size(0)):
        for t in range(target.size(1)):
            if target[b, t].item() == pad:
                continue
            p = softmax_list(t_logits[b, t].double().tolist(), T)
            q = softmax_list(s_logits[b, t].double().tolist(), T)
            expected += T * T * hand_kl(p, q)
    assert expected > 0.5
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert log["kd_loss"].item() == pytest.approx(expected, rel=1e-5)


def test_interpolation_weights(tiny_task):
    student, teacher = build_model(tiny_task, seed=0).eval(), build_model(tiny_task, seed=1).eval()
    sample = batch(tiny_task)
    _, _, log = word_kd(tiny_task, alpha=0.3, temperature=2.0, eps=0.1, teachers=[teacher])(student, sample)
    loss, _, _ = word_kd(tiny_task, alpha=0.3, temperature=2.0, eps=0.1, teachers=[teacher])(student, sample)
    gold, _, _ = word_kd(tiny_task, alpha=0.0, eps=0.1)(student, sample)
    assert loss.item() == pytest.approx(0.7 * gold.item() + 0.3 * log["kd_loss"].item(), rel=1e-5)


def test_two_teacher_ensemble_is_kl_to_mean_probabilities(tiny_task):
    student = build_model(tiny_task, seed=0).eval()
    t1, t2 = sharpen(build_model(tiny_task, seed=1).eval()), sharpen(build_model(tiny_task, seed=2).eval())
    sample = batch(tiny_task)
    T = 2.0
    loss, _, _ = word_kd(tiny_task, alpha=1.0, temperature=T, teachers=[t1, t2])(student, sample)
    with torch.no_grad():
        net_input = sample["net_input"]
        mean_p = (torch.softmax(t1(**net_input)[0] / T, -1) + torch.softmax(t2(**net_input)[0] / T, -1)) / 2
        s_lp = torch.log_softmax(student(**net_input)[0] / T, -1)
    per_tok = (mean_p * (mean_p.log() - s_lp)).sum(-1) * T * T
    expected = per_tok.masked_fill(sample["target"].eq(tiny_task.target_dictionary.pad()), 0).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # and it is not the mean of the two KLs (the ensemble averages probabilities, not losses)
    single = [word_kd(tiny_task, alpha=1.0, temperature=T, teachers=[t])(student, sample)[0].item() for t in (t1, t2)]
    assert abs(loss.item() - sum(single) / 2) > 1e-4


def test_teacher_stays_frozen_and_outside_the_criterion(tiny_task):
    student, teacher = build_model(tiny_task, seed=0), build_model(tiny_task, seed=1)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    crit = word_kd(tiny_task, alpha=0.5, temperature=2.0, teachers=[teacher])
    student.train()
    opt = torch.optim.Adam(student.parameters(), lr=0.1)
    sample = batch(tiny_task)
    for _ in range(3):
        opt.zero_grad()
        loss, _, _ = crit(student, sample)
        loss.backward()
        opt.step()
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())  # every teacher call runs under no_grad
    assert not teacher.training
    assert list(crit.parameters()) == [] and crit.state_dict() == {}


@pytest.mark.parametrize("alpha,eps", [(0.0, 0.1), (0.5, 0.0), (0.5, 0.1), (1.0, 0.1)])
def test_fused_sparse_word_kd_equals_the_two_terms(alpha, eps):
    """One gather for gold + top-k teacher entries gives the same loss and gradient as the separate terms."""
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, dtype=torch.float64, requires_grad=True)
    target = torch.randint(2, 11, (3, 5))
    target[0, 3:] = 1  # padding
    teacher = torch.softmax(torch.randn(3, 5, 11, dtype=torch.float64) * 2, dim=-1)
    values, ids = teacher.topk(4, dim=-1)
    probs = values / values.sum(-1, keepdim=True)  # the cache's renormalized top-k

    lprobs = torch.log_softmax(logits, dim=-1)
    smoothed, nll = gold_nll(lprobs, target, eps, padding_idx=1)
    kd = soft_target_loss(probs, lprobs, 1.0, ids).masked_fill(target.eq(1), 0.0)
    reference = interpolate(smoothed, kd, alpha)
    (g_ref,) = torch.autograd.grad(reference.sum(), logits)

    loss, nll2, kd2 = fused_sparse_word_kd(torch.log_softmax(logits, dim=-1), target, ids, probs, alpha, eps, 1)
    (g,) = torch.autograd.grad(loss.sum(), logits)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(nll2, nll)
    torch.testing.assert_close(kd2, kd)
    torch.testing.assert_close(g, g_ref)
    assert loss[0, 3:].abs().sum() == 0 and reference.abs().sum() > 0


def test_topk_log_probs_are_the_top_k_of_the_softmax():
    """One member: the top k of the logits less their logsumexp, against the V-wide softmax's top k (by hand:
    logits 0, ln 2, ln 5 give p = 1/8, 2/8, 5/8); an ensemble: the top k of the mean probabilities."""
    z = torch.tensor([[0.0, math.log(2), math.log(5)]])
    ids, logp = ensemble_topk_log_probs([z], 2)
    assert ids.tolist() == [[2, 1]] and torch.allclose(logp, torch.tensor([[math.log(5 / 8), math.log(2 / 8)]]))
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 50) * 4
    ids, logp = ensemble_topk_log_probs([logits], 8)
    ref_values, ref_ids = torch.softmax(logits, dim=-1).topk(8, dim=-1)
    assert torch.equal(ids, ref_ids) and torch.allclose(logp, ref_values.log(), atol=1e-5)
    members = [logits, torch.randn(3, 7, 50)]
    ids, logp = ensemble_topk_log_probs(members, 8)
    ref_values, ref_ids = ensemble_probs(members, 1.0).topk(8, dim=-1)
    assert torch.equal(ids, ref_ids) and torch.allclose(logp, ref_values.log())
