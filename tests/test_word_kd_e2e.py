"""End to end through the real CLIs: fairseq-train --user-dir fairseq_kd --criterion word_kd, then
fairseq-generate --user-dir fairseq_kd, with no environment variables set."""
import os

import pytest
import torch

import fairseq_kd  # noqa: F401  (its import allow-lists the globals fairseq checkpoints pickle)

from helpers import USER_DIR, error_line, hypotheses, make_corpus, preprocess, run, tool, train

STUDENT = ["--arch", "kd_lstm_1x32", "--encoder-embed-dim", "24"]


def generate(data, ckpt, *extra):
    proc = run([tool("fairseq-generate"), data, "--user-dir", USER_DIR, "--path", ckpt, "--gen-subset", "test",
                "--cpu", "--beam", "3", "--batch-size", "8", *extra])
    return hypotheses(proc.stdout), proc


@pytest.fixture(scope="module")
def word_kd_student(tiny_data, tiny_teacher, tmp_path_factory):
    save = tmp_path_factory.mktemp("word_kd")
    proc = train(tiny_data, save, *STUDENT, "--criterion", "word_kd", "--teacher-path", tiny_teacher,
                 "--kd-alpha", "0.5", "--kd-temperature", "2", "--label-smoothing", "0.1", epochs=4)
    return save, proc


def test_train_and_generate(tiny_data, word_kd_student):
    save, proc = word_kd_student
    assert "kd_loss" in proc.stdout + proc.stderr
    hyps, _ = generate(tiny_data, save / "checkpoint_last.pt")
    assert len(hyps) == 24


def test_teacher_learned_the_task(tiny_data, tiny_teacher):
    """Guards the fixture: a teacher that learned nothing would make the KD tests vacuous."""
    _, proc = generate(tiny_data, tiny_teacher, "--beam", "1")
    bleu = float(proc.stdout.split("BLEU4 = ")[1].split(",")[0])
    assert bleu > 20.0, proc.stdout[-500:]


def test_checkpoint_holds_no_teacher(tiny_data, word_kd_student, tmp_path):
    save, _ = word_kd_student
    baseline = tmp_path / "nll"
    train(tiny_data, baseline, *STUDENT, "--criterion", "label_smoothed_cross_entropy", epochs=4)
    kd_state = torch.load(save / "checkpoint_last.pt", map_location="cpu")  # weights_only: our allow-list
    nll_state = torch.load(baseline / "checkpoint_last.pt", map_location="cpu")
    assert set(kd_state["model"]) == set(nll_state["model"])
    assert not any("teacher" in k for k in kd_state["model"])
    assert kd_state.get("criterion") is None
    kd_size = os.path.getsize(save / "checkpoint_last.pt")
    nll_size = os.path.getsize(baseline / "checkpoint_last.pt")
    assert abs(kd_size - nll_size) < 0.02 * nll_size, (kd_size, nll_size)


def test_transformer_teacher_into_kd_lstm_student(tiny_data, tmp_path):
    teacher = tmp_path / "transformer"
    train(tiny_data, teacher, "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
          "--encoder-embed-dim", "32", "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
          "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
          "--criterion", "label_smoothed_cross_entropy", epochs=1)
    student = tmp_path / "student"
    proc = train(tiny_data, student, *STUDENT, "--criterion", "word_kd",
                 "--teacher-path", teacher / "checkpoint_last.pt", "--kd-alpha", "1.0", epochs=1)
    assert "TransformerModel" in proc.stdout + proc.stderr
    hyps, _ = generate(tiny_data, student / "checkpoint_last.pt")
    assert len(hyps) == 24


# ---- bad inputs: one clear line, before training starts -----------------------------------------

@pytest.fixture(scope="module")
def other_vocab_teachers(tmp_path_factory):
    """Teachers trained on data whose dictionaries differ: in size, and (same size) in symbols."""
    root = tmp_path_factory.mktemp("other")
    teachers = {}
    for name, rename in (("size", None), ("symbols", ("t", "u"))):
        raw = make_corpus(root / name / "raw", seed=0)  # same source side as tiny_data
        if name == "size":  # a smaller target vocabulary: 8 words instead of 16
            text = (raw / "train.tgt").read_text()
            for i in range(8, 16):
                text = text.replace(f"t{i} ", "t0 ").replace(f"t{i}\n", "t0\n")
            (raw / "train.tgt").write_text(text)
        else:
            for split in ("train", "valid", "test"):
                f = raw / f"{split}.tgt"
                f.write_text(f.read_text().replace(*rename))
        data = preprocess(raw, root / name / "bin")
        train(data, root / name / "ck", *STUDENT, "--criterion", "cross_entropy", "--max-update", "1", epochs=1)
        teachers[name] = root / name / "ck" / "checkpoint_last.pt"
    return teachers


def failing_train(data, save, *args):
    proc = run([tool("fairseq-train"), data, "--user-dir", USER_DIR, "--save-dir", save, "--cpu",
                "--max-update", "2", *STUDENT, "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "500",
                *args], check=False)
    assert proc.returncode != 0
    assert not (save / "checkpoint_last.pt").exists()
    return error_line(proc)


def test_dictionary_size_mismatch(tiny_data, other_vocab_teachers, tmp_path):
    last = failing_train(tiny_data, tmp_path, "--criterion", "word_kd", "--teacher-path", other_vocab_teachers["size"])
    assert last.startswith("teacher") and "target dictionary of" in last, last


def test_dictionary_symbols_mismatch(tiny_data, other_vocab_teachers, tmp_path):
    last = failing_train(tiny_data, tmp_path, "--criterion", "word_kd", "--teacher-path", other_vocab_teachers["symbols"])
    assert last.startswith("teacher") and "differs from the task's target dictionary" in last, last


def test_missing_teacher(tiny_data, tmp_path):
    last = failing_train(tiny_data, tmp_path, "--criterion", "word_kd", "--teacher-path", tmp_path / "nope.pt")
    assert last == f"teacher checkpoint not found: {tmp_path / 'nope.pt'}"


def test_corrupt_teacher(tiny_data, tiny_teacher, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(tiny_teacher.read_bytes()[:5000])
    last = failing_train(tiny_data, tmp_path / "s", "--criterion", "word_kd", "--teacher-path", broken)
    assert last.startswith(f"teacher checkpoint {broken} could not be read"), last


@pytest.mark.parametrize("flag,value,message", [
    ("--kd-alpha", "1.5", "--kd-alpha must be in [0, 1], got 1.5"),
    ("--kd-alpha", "-0.1", "--kd-alpha must be in [0, 1], got -0.1"),
    ("--kd-temperature", "0", "--kd-temperature must be > 0, got 0.0"),
])
def test_out_of_range_flags(tiny_data, tiny_teacher, tmp_path, flag, value, message):
    last = failing_train(tiny_data, tmp_path, "--criterion", "word_kd", "--teacher-path", tiny_teacher, flag, value)
    assert last == message
