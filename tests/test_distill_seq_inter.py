"""Seq-KD data (fairseq-kd-distill), the Seq-Inter selection rule, the translation_seq_inter task and
the seq_inter criterion."""
import filecmp
import math
import shutil
import signal
import subprocess
import time

import pytest
import torch

from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq_kd.seq_inter_selection import select_closest

from helpers import USER_DIR, build_model, clean_env, criterion, error_line, run, tool, train

OUTPUTS = ("train.src", "train.tgt", "train.nbest.tgt", "train.selected.tgt")


def distill_cmd(data, teacher, dest, *extra):
    return [tool("fairseq-kd-distill"), data, "--user-dir", USER_DIR, "--path", teacher, "--cpu", "--gen-subset",
            "train", "--beam", "3", "--nbest", "3", "--select-closest", "--destdir", dest, "--max-tokens", "2000",
            "--chunk-size", "25", *extra]


@pytest.fixture(scope="module")
def distilled(tiny_data, tiny_teacher, tmp_path_factory):
    dest = tmp_path_factory.mktemp("distilled")
    run(distill_cmd(tiny_data, tiny_teacher, dest))
    return dest


def lines(path):
    return path.read_text().split("\n")[:-1]


def test_outputs_aligned_and_trainable(distilled, tiny_data, tmp_path):
    src = lines(distilled / "train.src")
    assert len(src) == 400 and src[0] == (tiny_data.parent / "raw" / "train.src").read_text().split("\n")[0]
    assert len(lines(distilled / "train.tgt")) == 400 and len(lines(distilled / "train.selected.tgt")) == 400
    nbest = [line.split("\t") for line in lines(distilled / "train.nbest.tgt")]
    assert len(nbest) == 1200 and [int(r[1]) for r in nbest[:3]] == [0, 1, 2] and nbest[0][3] == lines(distilled / "train.tgt")[0]
    # the teacher's best beam hypotheses are mostly the right reversal: the teacher is decent
    gold = lines(tiny_data.parent / "raw" / "train.tgt")
    assert sum(a == b for a, b in zip(lines(distilled / "train.tgt"), gold)) > 100
    # the selected hypothesis is never further from the gold than the top-1
    assert sum(a == b for a, b in zip(lines(distilled / "train.selected.tgt"), gold)) >= \
        sum(a == b for a, b in zip(lines(distilled / "train.tgt"), gold))
    bin_dir = distilled / "bin"
    for name in ("dict.src.txt", "dict.tgt.txt", "valid.src-tgt.src.bin", "test.src-tgt.tgt.idx",
                 "train.src-tgt.src.bin", "train.src-tgt.tgt.bin", "train.selected.src-tgt.tgt.bin"):
        assert (bin_dir / name).exists(), name
    assert filecmp.cmp(bin_dir / "valid.src-tgt.tgt.bin", tiny_data / "valid.src-tgt.tgt.bin", shallow=False)
    train(bin_dir, tmp_path / "seqkd", "--arch", "kd_lstm_1x32", "--criterion", "label_smoothed_cross_entropy", epochs=1)
    assert (tmp_path / "seqkd" / "checkpoint_last.pt").exists()


def test_resume_after_kill_equals_uninterrupted(distilled, tiny_data, tiny_teacher, tmp_path):
    proc = subprocess.Popen([str(c) for c in distill_cmd(tiny_data, tiny_teacher, tmp_path)], env=clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = tmp_path / "work" / "chunk-000001.pt"
    deadline = time.time() + 120
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted((tmp_path / "work").glob("chunk-*.pt"))
    assert 0 < len(done) < 16, "the kill must land mid-run for this test to mean something"
    assert not (tmp_path / "train.tgt").exists()
    run(distill_cmd(tiny_data, tiny_teacher, tmp_path))
    for name in OUTPUTS:
        assert filecmp.cmp(distilled / name, tmp_path / name, shallow=False), name


def test_two_shards_merged_equal_one_run(distilled, tiny_data, tiny_teacher, tmp_path):
    for shard in ("0", "1"):
        out = run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--shard-id", shard, "--num-shards", "2")).stdout
        assert "run with --merge" in out
    assert not (tmp_path / "train.tgt").exists()
    run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--merge"))
    for name in OUTPUTS:
        assert filecmp.cmp(distilled / name, tmp_path / name, shallow=False), name


def test_merge_refuses_missing_and_mismatched_shards(tiny_data, tiny_teacher, tmp_path):
    run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--shard-id", "0", "--num-shards", "2"))
    proc = run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--merge"), check=False)
    assert "is incomplete: 8 of 16 chunks missing" in error_line(proc)
    cmd = distill_cmd(tiny_data, tiny_teacher, tmp_path, "--shard-id", "1", "--num-shards", "2")
    cmd[cmd.index("--beam") + 1] = "4"
    proc = run(cmd, check=False)
    assert "holds a run with other settings" in error_line(proc)
    assert not (tmp_path / "train.tgt").exists()


@pytest.mark.parametrize("change,message", [
    ({"--nbest": "4"}, "--nbest must be in [1, --beam] = [1, 3], got 4"),
    ({"--beam": "0", "--nbest": "1"}, "--beam must be >= 1, got 0"),
    ({"--gen-subset": "nosuch"}, "subset 'nosuch' not found"),
    ({"--path": "/nonexistent/teacher.pt"}, "teacher checkpoint not found: /nonexistent/teacher.pt"),
])
def test_distill_bad_inputs(tiny_data, tiny_teacher, tmp_path, change, message):
    cmd = [str(c) for c in distill_cmd(tiny_data, tiny_teacher, tmp_path)]
    for flag, value in change.items():
        cmd[cmd.index(flag) + 1] = value
    proc = run(cmd, check=False)
    assert proc.returncode != 0 and message in error_line(proc), proc.stderr[-500:]


def test_degenerate_hypotheses_are_replaced_by_gold(distilled, tiny_data, tiny_teacher, tmp_path):
    """A best or selected hypothesis longer than a x source + b tokens (a failed decode) becomes the gold target
    and is counted; --merge redoes it with other thresholds from the decoded chunks."""
    src = [len(line.split()) for line in lines(distilled / "train.src")]
    gold = lines(tiny_data.parent / "raw" / "train.tgt")
    top1 = [r.split("\t")[3] for r in lines(distilled / "train.nbest.tgt") if r.split("\t")[1] == "0"]
    # the default (2 x source + 10) leaves this decent teacher's hypotheses alone
    assert lines(distilled / "train.tgt") == top1
    shutil.copytree(distilled / "work", tmp_path / "work")
    out = run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--merge", "--degenerate-len-a", "0.5",
                          "--degenerate-len-b", "2")).stdout
    for corpus, before in (("best", top1), ("selected", lines(distilled / "train.selected.tgt"))):
        after = lines(tmp_path / ("train.tgt" if corpus == "best" else "train.selected.tgt"))
        long = [len(h.split()) > 0.5 * n + 2 for h, n in zip(before, src)]
        assert 0 < sum(long) < len(long), "the thresholds must split the corpus for this test to mean something"
        assert after == [g if bad else h for h, g, bad in zip(before, gold, long)]
        assert f"{sum(long)} {corpus}" in out
    assert "replaced by the gold target" in out
    assert filecmp.cmp(distilled / "train.nbest.tgt", tmp_path / "train.nbest.tgt", shallow=False)
    assert not filecmp.cmp(distilled / "bin" / "train.src-tgt.tgt.bin", tmp_path / "bin" / "train.src-tgt.tgt.bin",
                           shallow=False)
    proc = run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--merge", "--degenerate-len-a", "-1"), check=False)
    assert proc.returncode != 0
    assert "--degenerate-len-a must be >= 0 (0: off), got -1" in error_line(proc)


# ---- selection rule ---------------------------------------------------------------------------------

def test_one_best_selection_is_the_best_hypothesis(tiny_data, tiny_teacher, tmp_path):
    """Beam 1: the closest of one hypothesis is that hypothesis; the selected corpus is the best one, byte for byte."""
    run(distill_cmd(tiny_data, tiny_teacher, tmp_path, "--beam", "1", "--nbest", "1"))
    assert (tmp_path / "train.selected.tgt").read_text() == (tmp_path / "train.tgt").read_text()
    for ext in ("bin", "idx"):
        assert filecmp.cmp(tmp_path / "bin" / f"train.selected.src-tgt.tgt.{ext}",
                           tmp_path / "bin" / f"train.src-tgt.tgt.{ext}", shallow=False)
    assert not (tmp_path / "train.nbest.tgt").exists()


def test_ids_string_is_fairseqs_dictionary_string():
    from fairseq.data import Dictionary
    from fairseq_kd.inference import ids_string

    d = Dictionary()
    for w in ("▁ein", "▁Mann", "s"):
        d.add_symbol(w)
    ids = [d.bos(), d.index("▁ein"), d.unk(), d.index("s"), d.pad(), len(d) + 3, d.index("▁Mann"), d.eos()]
    for x in (torch.tensor(ids), ids, torch.tensor([d.eos()])):
        assert ids_string(d, x) == d.string(torch.tensor(x) if isinstance(x, list) else x)
    assert ids_string(d, ids) == "▁ein <unk> s <pad> <unk> ▁Mann"


def test_selection_picks_highest_sentence_bleu():
    gold = "a dog runs on the green grass"
    kbest = [("a cat sits on a mat", -0.1), ("a dog runs on the grass", -0.5), ("the dog", -0.2)]
    assert select_closest(kbest, gold)[0] == 1


def test_selection_score_is_sacrebleu_sentence_bleu():
    import sacrebleu

    gold = "ein Mann in einem blauen Hemd steht auf einer Leiter."
    for hyp in ("ein Mann im blauen Hemd steht auf der Leiter.", "Leiter", ""):
        assert select_closest([(hyp, 0.0)], gold)[1] == sacrebleu.sentence_bleu(hyp, [gold]).score


def test_selection_tie_goes_to_teacher_score_then_rank():
    gold = "a dog runs"
    assert select_closest([("a cat", -0.9), ("a cat", -0.3), ("a cat", -0.3)], gold)[0] == 1
    assert select_closest([("x y", -0.4), ("y x", -0.4)], gold)[0] == 0


# ---- seq_inter criterion ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seq_inter_task(tiny_data, distilled):
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [
        str(tiny_data), "--user-dir", USER_DIR, "--task", "translation_seq_inter", "--arch", "kd_lstm_1x32",
        "--selected-targets", str(distilled / "bin" / "train.selected.src-tgt.tgt")])
    task = tasks.setup_task(convert_namespace_to_omegaconf(args).task)
    task.load_dataset("train")
    return task


def selected_batch(task):
    ds = task.dataset("train")
    return ds.collater([ds[i] for i in range(8)])


def selected_nll(model, task, sample, selected):
    """By hand, sentence by sentence: the NLL of each batch sentence's selected hypothesis (from the distilled
    text, not the batch), and their token count (EOS included)."""
    d = task.target_dictionary
    nll, n_tokens = 0.0, 0
    with torch.no_grad():
        for row, sid in enumerate(sample["id"].tolist()):
            tgt = d.encode_line(selected[sid], add_if_not_exist=False).long()
            prev = torch.cat([tgt[-1:], tgt[:-1]]).unsqueeze(0)
            src = sample["net_input"]["src_tokens"][row: row + 1]
            src = src[:, src.ne(d.pad()).squeeze(0)]
            logits = model(src, torch.tensor([src.size(1)]), prev)[0]
            nll += -torch.log_softmax(logits.float(), -1)[0].gather(-1, tgt.unsqueeze(-1)).sum().item()
            n_tokens += tgt.numel()
    return nll, n_tokens


def test_seq_inter_alpha_zero_is_gold_nll(seq_inter_task):
    model = build_model(seq_inter_task).eval()
    sample = selected_batch(seq_inter_task)
    ours = criterion("seq_inter", seq_inter_task, kd_alpha=0.0, label_smoothing=0.1)(model, sample)[0]
    ref = LabelSmoothedCrossEntropyCriterion(seq_inter_task, sentence_avg=False, label_smoothing=0.1)(model, sample)[0]
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)


def test_seq_inter_alpha_one_is_nll_of_selected(seq_inter_task, distilled):
    model = build_model(seq_inter_task).eval()
    sample = selected_batch(seq_inter_task)
    ours = criterion("seq_inter", seq_inter_task, kd_alpha=1.0, label_smoothing=0.0)(model, sample)[0]
    expected, _ = selected_nll(model, seq_inter_task, sample, lines(distilled / "train.selected.tgt"))
    assert ours.item() == pytest.approx(expected, rel=1e-5)
    assert sample["selected_target"].shape[0] == 8


def test_seq_inter_logs_the_selected_nll_per_selected_token(seq_inter_task, distilled):
    """kd_loss in the metrics = the selected hypotheses' NLL / their token count, in bits (hand computed)."""
    from fairseq.logging import metrics

    model = build_model(seq_inter_task).eval()
    sample = selected_batch(seq_inter_task)
    crit = criterion("seq_inter", seq_inter_task, kd_alpha=0.5, label_smoothing=0.1)
    with torch.no_grad():
        _, _, log = crit(model, sample)
    nll, n_tokens = selected_nll(model, seq_inter_task, sample, lines(distilled / "train.selected.tgt"))
    assert log["kd_ntokens"] == n_tokens == sample["selected_ntokens"]
    with metrics.aggregate() as agg:
        type(crit).reduce_metrics([log])
    assert agg.get_smoothed_values()["kd_loss"] == pytest.approx(nll / n_tokens / math.log(2), abs=1e-3)


def test_seq_inter_trains_end_to_end(tiny_data, distilled, tmp_path):
    proc = train(tiny_data, tmp_path, "--arch", "kd_lstm_1x32", "--task", "translation_seq_inter",
                 "--selected-targets", distilled / "bin" / "train.selected.src-tgt.tgt",
                 "--criterion", "seq_inter", "--kd-alpha", "0.5", "--label-smoothing", "0.1", epochs=1)
    assert (tmp_path / "checkpoint_last.pt").exists() and "kd_loss" in proc.stdout + proc.stderr


def test_seq_inter_misaligned_selected_targets(tiny_data, tmp_path):
    proc = run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--arch", "kd_lstm_1x32", "--cpu",
                "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "500", "--save-dir", tmp_path,
                "--task", "translation_seq_inter", "--selected-targets", tiny_data / "valid.src-tgt.tgt",
                "--criterion", "seq_inter"], check=False)
    last = error_line(proc)
    assert "has 24 sentences, subset 'train' has 400: the selected targets are not aligned" in last, last
