"""Offline word_kd: the top-k teacher cache (fairseq-kd-dump-topk) and word_kd --teacher-topk-path."""
import filecmp
import json

import pytest
import torch

from fairseq.data import Dictionary
from fairseq_kd.errors import FairseqKDError
from fairseq_kd.teacher_topk_cache import TeacherTopKCache

from helpers import USER_DIR, batch, build_model, criterion, error_line, run, tool, train

CACHE_FILES = ("ids.npy", "values.npy", "offsets.npy", "meta.json")


def dump(data, teacher, dest, *extra):
    return run([tool("fairseq-kd-dump-topk"), data, "--user-dir", USER_DIR, "--path", teacher, "--cpu",
                "--destdir", dest, "--max-tokens", "2000", *extra])


@pytest.fixture(scope="module")
def full_cache(tiny_data, tiny_teacher, tmp_path_factory):
    """k = |V| in float32: the offline loss must equal the online one."""
    dest = tmp_path_factory.mktemp("cache_full")
    vocab = len(Dictionary.load(str(tiny_data / "dict.tgt.txt")))
    dump(tiny_data, tiny_teacher, dest, "--gen-subset", "train", "--topk", str(vocab), "--cache-dtype", "float32")
    return dest


def criteria(task, teacher_path, cache, temperature=2.0):
    common = dict(kd_alpha=0.6, kd_temperature=temperature, label_smoothing=0.1)
    online = criterion("word_kd", task, teacher_path=str(teacher_path), **common)
    offline = criterion("word_kd", task, teacher_topk_path=str(cache), **common)
    assert offline.teacher is None and offline.topk_cache is not None
    return online, offline


@pytest.mark.parametrize("temperature", [2.0, 1.0])  # T = 1 takes the fused sparse path
def test_full_k_offline_equals_online_loss_and_gradients(tiny_task, tiny_teacher, full_cache, temperature):
    online, offline = criteria(tiny_task, tiny_teacher, full_cache, temperature)
    sample = batch(tiny_task, split="train", n=8)
    results = []
    for crit in (online, offline):
        student = build_model(tiny_task, seed=3).train()  # kd_lstm_1x32 has no dropout: train mode is deterministic
        loss, _, log = crit(student, sample)
        loss.backward()
        results.append((loss.item(), log["kd_loss"].item(), {n: p.grad.clone() for n, p in student.named_parameters()}))
    (l1, kd1, g1), (l2, kd2, g2) = results
    assert kd1 > 0.01
    assert l2 == pytest.approx(l1, rel=1e-5, abs=1e-5)
    assert kd2 == pytest.approx(kd1, rel=1e-5, abs=1e-5)
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], rtol=1e-5, atol=1e-5)


def test_validation_with_cache_only_uses_the_gold_term(tiny_task, tiny_teacher, full_cache):
    _, offline = criteria(tiny_task, tiny_teacher, full_cache)
    sample = batch(tiny_task, split="valid")
    student = build_model(tiny_task, seed=3).eval()
    loss, _, log = offline(student, sample)
    gold = criterion("word_kd", tiny_task, kd_alpha=0.0, label_smoothing=0.1)(student, sample)[0]
    assert loss.item() == pytest.approx(gold.item(), rel=1e-6) and log["kd_loss"].item() == 0


def test_topk8_fp16_cache_trains_end_to_end_and_reports_size(tiny_data, tiny_teacher, tmp_path):
    cache = tmp_path / "cache8"
    out = dump(tiny_data, tiny_teacher, cache, "--gen-subset", "train", "--topk", "8").stdout
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["k"] == 8 and meta["value_dtype"] == "float16" and meta["n_sentences"] == 400
    assert "bytes per target token" in out
    c = TeacherTopKCache(str(cache))
    assert c.ids.shape == (meta["n_rows"], 8) and str(c.values.dtype) == "float16"
    # most probable first, and log-probabilities of a distribution
    assert (c.values[:, :-1].astype("float32") >= c.values[:, 1:].astype("float32")).all()
    assert (c.values.astype("float32") <= 1e-3).all()
    save = tmp_path / "student"
    proc = train(tiny_data, save, "--arch", "kd_lstm_1x32", "--criterion", "word_kd", "--teacher-topk-path", cache,
                 "--kd-alpha", "0.5", "--update-freq", "2", epochs=1)
    assert (save / "checkpoint_last.pt").exists() and "kd_loss" in proc.stdout + proc.stderr


def test_dump_resumes_after_interruption(tiny_data, tiny_teacher, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    args = ("--gen-subset", "train", "--topk", "4", "--chunk-size", "100")
    dump(tiny_data, tiny_teacher, whole, *args)
    dump(tiny_data, tiny_teacher, resumed, *args)
    # an interruption leaves some chunks (and no final files): remove what a kill after chunk 1 would not have written
    for f in CACHE_FILES:
        (resumed / f).unlink()
    for c in (2, 3):
        (resumed / "work" / f"chunk-{c:06d}.pt").unlink()
    (resumed / "work" / "chunk-000002.pt.tmp").write_bytes(b"half-written")
    dump(tiny_data, tiny_teacher, resumed, *args)
    for f in ("ids.npy", "values.npy", "offsets.npy"):
        assert filecmp.cmp(whole / f, resumed / f, shallow=False), f


def test_dump_refuses_other_settings_in_same_dir(tiny_data, tiny_teacher, tmp_path):
    dump(tiny_data, tiny_teacher, tmp_path, "--gen-subset", "valid", "--topk", "4")
    proc = run([tool("fairseq-kd-dump-topk"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu",
                "--destdir", tmp_path, "--gen-subset", "valid", "--topk", "5"], check=False)
    assert "holds a run with other settings" in error_line(proc)


def test_cache_of_another_subset_is_rejected_before_training(tiny_data, tiny_teacher, tmp_path):
    cache = tmp_path / "valid_cache"
    dump(tiny_data, tiny_teacher, cache, "--gen-subset", "valid", "--topk", "4")
    proc = run([tool("fairseq-train"), tiny_data, "--user-dir", USER_DIR, "--arch", "kd_lstm_1x32", "--cpu",
                "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "500", "--save-dir", tmp_path / "s",
                "--criterion", "word_kd", "--teacher-topk-path", cache], check=False)
    last = error_line(proc)
    assert last.startswith(f"top-k cache {cache} was made for subset 'valid' of 24 sentences, "
                           "which is not the 'train' subset being trained on"), last
    assert not (tmp_path / "s" / "checkpoint_last.pt").exists()


def test_cache_of_another_dictionary_is_rejected(tiny_task, full_cache):
    cache = TeacherTopKCache(str(full_cache))
    other = Dictionary()
    for sym in tiny_task.target_dictionary.symbols[4:]:
        other.add_symbol(sym)
    other.add_symbol("extra")
    with pytest.raises(FairseqKDError, match="was made with another target dictionary"):
        cache.check_matches(other, "train", tiny_task.dataset("train").tgt_sizes if "train" in tiny_task.datasets else [])


def test_incomplete_cache_is_not_used(tmp_path):
    (tmp_path / "work").mkdir()
    with pytest.raises(FairseqKDError, match="no complete top-k cache"):
        TeacherTopKCache(str(tmp_path))


def test_topk_out_of_range(tiny_data, tiny_teacher, tmp_path):
    proc = run([tool("fairseq-kd-dump-topk"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu",
                "--destdir", tmp_path, "--topk", "0"], check=False)
    assert "--topk must be in [1," in error_line(proc)
