"""Provenance of cached teacher outputs: a top-k cache (the teacher's, or a student's own for self_kd) and a
Seq-KD corpus are refused once the checkpoint that made them has changed."""
import json
import os
import shutil

import pytest

from fairseq_kd import provenance

from helpers import USER_DIR, error_line, run, tool, train

SMALL = ["--arch", "kd_lstm_1x32", "--encoder-embed-dim", "24", "--criterion", "cross_entropy"]


def dump(data, checkpoint, dest):
    run([tool("fairseq-kd-dump-topk"), data, "--user-dir", USER_DIR, "--path", checkpoint, "--cpu", "--gen-subset",
         "train", "--topk", "4", "--destdir", dest, "--max-tokens", "2000"])


def retrain_in_place(data, save):
    """What a user (or a recipe's STAGE=) does to a model: train it again in its own directory."""
    shutil.rmtree(save)
    train(data, save, *SMALL, "--seed", "7", epochs=1)


def word_kd_run(data, save, cache, *extra):
    return run([tool("fairseq-train"), data, "--user-dir", USER_DIR, "--save-dir", save, "--cpu", "--max-update", "2",
                *SMALL[:4], "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "500", "--criterion", "word_kd",
                "--teacher-topk-path", cache, "--no-epoch-checkpoints", *extra], check=False)


def teacher_with_cache(data, root):
    teacher = root / "teacher"
    train(data, teacher, *SMALL, epochs=1)
    cache = root / "cache"
    dump(data, teacher / "checkpoint_last.pt", cache)
    return teacher, cache


@pytest.fixture(scope="module")
def teacher_and_cache(tiny_data, tmp_path_factory):
    """For the tests that leave the teacher's weights as they are."""
    return teacher_with_cache(tiny_data, tmp_path_factory.mktemp("provenance"))


def test_cache_records_the_teacher_identity(teacher_and_cache):
    teacher, cache = teacher_and_cache
    (identity,) = json.loads((cache / "meta.json").read_text())["teachers"]
    ckpt = teacher / "checkpoint_last.pt"
    assert identity["path"] == str(ckpt.resolve()) and identity["size"] == os.path.getsize(ckpt)
    assert identity["mtime"] == os.stat(ckpt).st_mtime
    assert identity == provenance.checkpoint_identity(str(ckpt))


def test_stale_teacher_cache_is_refused(tiny_data, tmp_path):
    teacher, cache = teacher_with_cache(tiny_data, tmp_path)
    assert word_kd_run(tiny_data, tmp_path / "fresh", cache).returncode == 0
    retrain_in_place(tiny_data, teacher)
    proc = word_kd_run(tiny_data, tmp_path / "s", cache)
    message = error_line(proc)
    assert message.startswith(f"top-k cache {cache} is stale: teacher checkpoint {(teacher / 'checkpoint_last.pt').resolve()} "
                              "has changed (model hash "), message
    assert message.endswith("since the cache was made; rebuild the cache, or pass --allow-stale-cache to use it anyway")
    assert not (tmp_path / "s" / "checkpoint_last.pt").exists()
    # the recipes' check before they skip a stage says the same
    assert error_line(run([tool("fairseq-kd-check-cache"), cache], check=False)) == message
    # --allow-stale-cache: a warning, and the run goes on
    proc = word_kd_run(tiny_data, tmp_path / "s", cache, "--allow-stale-cache")
    assert proc.returncode == 0 and "is stale" in proc.stdout + proc.stderr


def test_stale_self_kd_cache_is_refused(tiny_data, tmp_path):
    """self_kd: a student's own cache; the student retrained in place; pruning it against that cache is refused."""
    student = tmp_path / "student"
    train(tiny_data, student, *SMALL, epochs=1)
    cache = tmp_path / "topk_self_student"
    dump(tiny_data, student / "checkpoint_last.pt", cache)
    train(tiny_data, student, *SMALL, epochs=2)  # resumes and trains on: same file, new weights
    proc = word_kd_run(tiny_data, tmp_path / "pruned", cache, "--task", "translation_prune", "--prune-ratio", "0.5",
                       "--finetune-from-model", student / "checkpoint_last.pt")
    assert error_line(proc).startswith(f"top-k cache {cache} is stale: teacher checkpoint "
                                       f"{(student / 'checkpoint_last.pt').resolve()} has changed")


def test_same_weights_in_a_touched_or_copied_file_are_fresh(teacher_and_cache):
    teacher, cache = teacher_and_cache
    ckpt = teacher / "checkpoint_last.pt"
    os.utime(ckpt, (1, 1))  # mtime changes: the weights are hashed again, and match
    assert "checked" in run([tool("fairseq-kd-check-cache"), cache]).stdout


def test_gone_teacher_is_a_warning(teacher_and_cache, tmp_path):
    _, cache = teacher_and_cache
    meta = json.loads((cache / "meta.json").read_text())
    meta["teachers"][0]["path"] = str(tmp_path / "deleted.pt")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    proc = run([tool("fairseq-kd-check-cache"), tmp_path])
    assert f"was made by {tmp_path / 'deleted.pt'}, which is gone: its freshness cannot be checked" in proc.stderr


def test_stale_seqkd_corpus_is_refused(tiny_data, tmp_path):
    teacher = tmp_path / "teacher"
    train(tiny_data, teacher, *SMALL, epochs=1)
    out = tmp_path / "seqkd"
    distill = [tool("fairseq-kd-distill"), tiny_data, "--user-dir", USER_DIR, "--path", teacher / "checkpoint_last.pt",
               "--cpu", "--gen-subset", "valid", "--beam", "2", "--destdir", out, "--max-len-a", "1", "--max-len-b", "5"]
    run(distill)
    assert (out / "provenance.json").exists() and "checked" in run([tool("fairseq-kd-check-cache"), out]).stdout
    retrain_in_place(tiny_data, teacher)
    assert "Seq-KD corpus" in error_line(run([tool("fairseq-kd-check-cache"), out], check=False))
    # and a rerun into the same directory does not mix the old teacher's chunks with the new one's
    assert "holds a run with other settings" in error_line(run(distill, check=False))


def test_cache_without_records_is_refused(tmp_path):
    (tmp_path / "meta.json").write_text('{"k": 4}')
    assert "records no teacher checkpoints" in error_line(run([tool("fairseq-kd-check-cache"), tmp_path], check=False))
    assert "is not a finished top-k cache" in error_line(
        run([tool("fairseq-kd-check-cache"), tmp_path / "nothing"], check=False))
