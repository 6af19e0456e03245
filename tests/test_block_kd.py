"""block_kd: block formation, scores, weights, selection, and the criterion against word_kd."""
import pytest
import torch

from fairseq.data import Dictionary
from fairseq_kd import blocks
from fairseq_kd.errors import FairseqKDError
from fairseq_kd.teacher import Teacher

from helpers import batch, build_model, criterion, sharpen, train

# ---- blocks on a hand-made sentence ----------------------------------------------------------------

SPM = ["\u2581Ein", "\u2581Hund", "\u2581läuft", "\u2581schn", "ell", ",", "\u2581der", "\u2581Ba", "ll", "\u2581.", "</s>"]


def spm_target():
    d = Dictionary()
    ids = [d.add_symbol(s) for s in SPM[:-1]] + [d.eos()]
    word_start, punct, cont = blocks.symbol_flags(d.symbols, {d.bos(), d.pad(), d.eos(), d.unk()})
    return d, torch.tensor([ids]), word_start, punct, cont


def grouped(starts, symbols):
    groups = []
    for sym, start in zip(symbols, starts[0].tolist()):
        groups.append([sym]) if start else groups[-1].append(sym)
    return groups


def test_word_blocks_join_sentencepiece_pieces():
    d, target, ws, punct, cont = spm_target()
    starts = blocks.block_starts(target, "word", 0, d.eos(), ws, punct, cont)
    assert grouped(starts, SPM) == [["\u2581Ein"], ["\u2581Hund"], ["\u2581läuft"], ["\u2581schn", "ell", ","],
                                    ["\u2581der"], ["\u2581Ba", "ll"], ["\u2581."], ["</s>"]]


def test_punct_blocks_end_after_punctuation():
    d, target, ws, punct, cont = spm_target()
    starts = blocks.block_starts(target, "punct", 0, d.eos(), ws, punct, cont)
    assert grouped(starts, SPM) == [SPM[0:6], SPM[6:10], ["</s>"]]


def test_fixed_blocks_and_eos_alone():
    d, target, ws, punct, cont = spm_target()
    starts = blocks.block_starts(target, "fixed", 4, d.eos(), ws, punct, cont)
    assert grouped(starts, SPM) == [SPM[0:4], SPM[4:8], SPM[8:10], ["</s>"]]


def test_word_blocks_with_bpe_continuation_markers():
    d = Dictionary()
    syms = ["ein", "Hun@@", "d", "läu@@", "f@@", "t"]
    target = torch.tensor([[d.add_symbol(s) for s in syms] + [d.eos()]])
    ws, punct, cont = blocks.symbol_flags(d.symbols, {d.bos(), d.pad(), d.eos(), d.unk()})
    starts = blocks.block_starts(target, "word", 0, d.eos(), ws, punct, cont)
    assert grouped(starts, syms + ["</s>"]) == [["ein"], ["Hun@@", "d"], ["läu@@", "f@@", "t"], ["</s>"]]


def test_block_scores_weights_and_threshold_by_hand():
    # one sentence, blocks [0,1] [2] [3], token log-probs chosen so block means are log .5, log .9, log .2
    logp = torch.log(torch.tensor([[0.25, 1.0, 0.9, 0.2]]))
    ids = torch.tensor([[0, 0, 1, 2]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    mean, counts = blocks.block_reduce(logp, ids, mask)
    scores = mean.exp()
    exists = counts.gt(0)
    assert scores[0, :3].tolist() == pytest.approx([0.5, 0.9, 0.2])
    w = blocks.block_weights(scores, exists, "confidence", threshold=0.3)
    assert blocks.token_weights(w, ids, mask)[0].tolist() == pytest.approx([0.5, 0.5, 0.9, 0.0])
    w = blocks.block_weights(scores, exists, "hard", threshold=0.6)
    assert blocks.token_weights(w, ids, mask).tolist() == [[0.0, 0.0, 1.0, 0.0]]
    w = blocks.block_weights(scores, exists, "softmax", temperature=0.5)
    e = torch.exp(torch.tensor([0.5, 0.9, 0.2]) / 0.5)
    assert w[0, :3].tolist() == pytest.approx((3 * e / e.sum()).tolist(), rel=1e-6)
    assert w[0, :3].mean().item() == pytest.approx(1.0)


def test_batch_selection_keeps_exact_fraction():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.0], [0.7, 0.3, 0.2, 0.8]])
    exists = torch.tensor([[True, True, True, False], [True, True, True, True]])  # 7 tokens
    sel = blocks.select_blocks(scores, exists, rate=3 / 7, level="batch")
    assert sel.tolist() == [[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
    assert sel.sum().item() == 3


def test_sentence_selection_per_sentence():
    scores = torch.tensor([[0.9, 0.1, 0.5, 0.0], [0.7, 0.3, 0.2, 0.8]])
    exists = torch.tensor([[True, True, True, False], [True, True, True, True]])
    sel = blocks.select_blocks(scores, exists, rate=0.5, level="sentence")
    # round(1.5) = 2 of 3 and 2 of 4
    assert sel.tolist() == [[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 1.0]]


def test_global_selection_uses_history():
    queue = blocks.ScoreQueue(size=4)
    exists = torch.ones(1, 2, dtype=torch.bool)
    blocks.select_blocks(torch.tensor([[10.0, 9.0]]), exists, 0.5, "global", queue)
    # history now [10, 9, 1, 2]: the median 5.5 keeps neither 1 nor 2
    sel = blocks.select_blocks(torch.tensor([[1.0, 2.0]]), exists, 0.5, "global", queue)
    assert sel.tolist() == [[0.0, 0.0]]


# ---- the criterion ----------------------------------------------------------------------------------

def block_kd(task, teacher, **kw):
    """block_kd with its defaults but for a = 1, T = 2 and hard fixed blocks of 2 (each overridable)."""
    cfg = dict(kd_alpha=1.0, kd_temperature=2.0, block_mode="fixed", block_size=2, block_weighting="hard")
    return criterion("block_kd", task, teacher=Teacher([teacher]), **dict(cfg, **kw))


def models(task):
    return sharpen(build_model(task, seed=0)).eval(), sharpen(build_model(task, seed=1)).eval()


def test_hard_threshold_zero_equals_word_kd_alpha_one(tiny_task):
    student, teacher = models(tiny_task)
    sample = batch(tiny_task)
    ours, _, log = block_kd(tiny_task, teacher)(student, sample)
    ref, _, _ = criterion("word_kd", tiny_task, teacher=Teacher([teacher]), kd_alpha=1.0, kd_temperature=2.0)(
        student, sample)
    assert abs(ours.item() - ref.item()) <= 1e-6 * abs(ref.item())
    assert log["ignored_tokens"] == 0


def test_ignored_blocks_get_exactly_zero_gradient(tiny_task):
    student, teacher = models(tiny_task)
    sample = batch(tiny_task)
    captured = {}

    def keep_logits(module, inputs, output):
        output.retain_grad()
        captured["logits"] = output

    student.decoder.output_projection.register_forward_hook(keep_logits)
    crit = block_kd(tiny_task, teacher, block_weighting="confidence", block_threshold=0.05)
    loss, _, log = crit(student, sample)
    loss.backward()
    target = sample["target"]
    with torch.no_grad():
        t_probs = teacher(**sample["net_input"])[0].float().softmax(-1)
        weights, _ = crit.token_block_weights(target, t_probs, None)
    ignored = weights.eq(0) & target.ne(tiny_task.target_dictionary.pad())
    kept = weights.gt(0)
    assert 0 < ignored.sum() < target.ne(1).sum(), "the threshold must split the tokens for this test to mean something"
    assert log["ignored_tokens"] == ignored.sum().item()
    grad = captured["logits"].grad
    assert grad[ignored].abs().max().item() == 0.0
    assert grad[kept].abs().sum(-1).min().item() > 0.0


def test_weights_are_deterministic_given_the_teacher(tiny_task):
    _, teacher = models(tiny_task)
    sample = batch(tiny_task)
    crit = block_kd(tiny_task, teacher, block_mode="word", block_weighting="softmax", block_threshold=0.1)
    with torch.no_grad():
        t_probs = teacher(**sample["net_input"])[0].float().softmax(-1)
    w1, _ = crit.token_block_weights(sample["target"], t_probs, None)
    w2, _ = crit.token_block_weights(sample["target"], t_probs.clone(), None)
    assert torch.equal(w1, w2)


def test_student_ce_batch_selection_through_the_criterion(tiny_task):
    student, teacher = models(tiny_task)
    sample = batch(tiny_task)
    crit = block_kd(tiny_task, teacher, block_size=1, block_score="student-ce", block_weighting="select",
                    select_rate=0.25, select_level="batch")
    _, _, log = crit(student, sample)
    ntok = sample["ntokens"]
    assert ntok - log["ignored_tokens"] == round(0.25 * ntok)


@pytest.mark.parametrize("kw,message", [
    ({"block_size": 0}, "--block-size must be >= 1, got 0"),
    ({"block_threshold": 1.5}, "--block-threshold must be in [0, 1], got 1.5"),
    ({"block_threshold": -0.1}, "--block-threshold must be in [0, 1], got -0.1"),
    ({"block_mode": "sentence"}, "--block-mode must be one of fixed, word, punct, got 'sentence'"),
    ({"select_rate": 2.0}, "--select-rate must be in [0, 1], got 2.0"),
    ({"block_score": "student-ce"}, "--block-score student-ce is a difficulty"),
])
def test_bad_block_options(tiny_task, kw, message):
    _, teacher = models(tiny_task)
    with pytest.raises(FairseqKDError, match=message.replace("[", r"\[").replace("]", r"\]")):
        block_kd(tiny_task, teacher, **kw)


def test_block_kd_trains_end_to_end(tiny_data, tiny_teacher, tmp_path):
    proc = train(tiny_data, tmp_path, "--arch", "kd_lstm_1x32", "--encoder-embed-dim", "24", "--criterion", "block_kd",
                 "--teacher-path", tiny_teacher, "--block-mode", "fixed", "--block-size", "2",
                 "--block-weighting", "softmax", "--block-threshold", "0.1", "--kd-alpha", "0.7", epochs=1)
    out = proc.stdout + proc.stderr
    assert "ignored_frac" in out and "block_len" in out and (tmp_path / "checkpoint_last.pt").exists()
