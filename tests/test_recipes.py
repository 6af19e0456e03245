"""The recipes end to end: SMOKE=1 runs every stage of each recipe on tiny data and tiny models, then the
checks here read what the stages wrote. Also: a rerun skips finished stages, bad inputs stop with one message."""
import filecmp
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import pytest

from helpers import BIN, ROOT, SHARED_DATA, clean_env

RECIPES = {
    # the multi30k smoke run has both tracks (LSTM and transformer students) and the transformer teacher; it prunes
    # the transformer Seq-KD student, retrained with word_kd against the teacher's cache over the distilled corpus.
    # The WMT14 one prunes the LSTM Seq-Inter student (retrained with seq_inter), the IWSLT one the auto choice,
    # retrained with word_kd against the unpruned student (self_kd). The WMT14 one trains every LSTM objective; the
    # IWSLT one only the two its pruning and tables need (the pipeline is the same: it covers the recipe's data and
    # direction)
    "multi30k_en_de": ("recipes/multi30k_en_de/run.sh", {"PRUNE_STUDENT": "student_tf_seqkd", "PRUNE_OBJECTIVE": "word_kd"}),
    "wmt14_en_de": ("recipes/wmt14_en_de/run.sh", {"PRUNE_STUDENT": "student_lstm_seqkd_seqinter"}),
    "iwslt": ("recipes/iwslt/run.sh", {"PAIR": "de-en", "PRUNE_OBJECTIVE": "self_kd", "STUDENTS": "lstm_nll lstm_seqkd"}),
}
LSTM_STUDENTS = ["student_lstm_nll", "student_lstm_word_kd", "student_lstm_seqkd", "student_lstm_seqkd_seqinter",
                 "student_lstm_seqkd_word_kd", "student_lstm_block_kd"]
# the multi30k smoke run: both tracks, the transformer one with word_kd too (the other objectives: the other runs)
TRANSFORMERS = {"multi30k_en_de": ["teacher", "student_tf_nll", "student_tf_seqkd", "student_tf_seqkd_word_kd"]}
PRUNED = ["pruned_0.0", "pruned_0.5", "pruned_0.8", "pruned_0.9"]
COMPRESSED = ["pruned_0.8_sparse", "pruned_0.8_sparse_int8"]


def students(name):
    if "STUDENTS" in RECIPES[name][1]:
        return [f"student_{s}" for s in RECIPES[name][1]["STUDENTS"].split()]
    if name in TRANSFORMERS:
        return ["student_lstm_nll", "student_lstm_seqkd"] + [m for m in TRANSFORMERS[name] if m.startswith("student_")]
    return LSTM_STUDENTS


def models(name, work=None, setting="batched"):
    """The speed stage's models: every one batched; at batch 1 all but the pruned ones (and their compressed files).
    With `work`, the best student's int8 model too (named in best_student.txt)."""
    int8 = [f"{(work / 'best_student.txt').read_text().strip()}_int8"] if work else []
    if setting == "batch1":
        return ["teacher", *students(name), *int8]
    return ["teacher", *students(name), *PRUNED, *COMPRESSED, *int8]


def caches(name):
    """The teacher's top-k caches a run writes: for its word_kd students (and the multi30k run's word_kd pruning)."""
    return [] if name == "iwslt" else ["topk", "topk_seqkd"]


def stages(name):
    return ["prepare", "teacher", *caches(name), "seqkd_data", *students(name), "prune", "compress", "speed", "report"]


def engines(name, model):
    """The engines the speed stage measures a model with (SPEED_ENGINES="fairseq auto")."""
    pruned_transformer = name in TRANSFORMERS and model.startswith("pruned_")  # the multi30k run prunes student_tf_seqkd
    if model in COMPRESSED and pruned_transformer:
        return {"fairseq"}  # fairseq-kd-compress files of a transformer: fairseq only (export the checkpoint instead)
    if model.endswith("_int8") and model[:-len("_int8")] in TRANSFORMERS.get(name, []):
        return {"ctranslate2"}  # a CTranslate2 export
    transformer = model in TRANSFORMERS.get(name, []) or pruned_transformer
    return {"fairseq", "ctranslate2" if transformer else "fast"}


def recipe(script, work, timeout=900, **env_vars):
    env = clean_env()
    env.update({"WORK": str(work), "THREADS": "1", **{k: str(v) for k, v in env_vars.items()}})
    return subprocess.run(["bash", str(ROOT / script)], env=env, capture_output=True, text=True, timeout=timeout)


# Each recipe's smoke run is slow (minutes) and its own xdist group: the three run on both cores side by side, and
# each once (the tests that read one run go with it).
@pytest.fixture(scope="module", params=[pytest.param(name, marks=[pytest.mark.slow, pytest.mark.xdist_group(name)])
                                        for name in sorted(RECIPES)])
def smoke_run(request, tmp_path_factory):
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    script, env = RECIPES[request.param]
    work = tmp_path_factory.mktemp(request.param)
    start = time.time()
    proc = recipe(script, work, SMOKE=1, **env)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-6000:]}"
    return request.param, script, env, work, time.time() - start


def test_smoke_every_stage_ran(smoke_run):
    name, _, _, work, seconds = smoke_run
    assert sorted(p.name for p in (work / ".done").iterdir()) == sorted(stages(name))
    times = dict(line.split() for line in (work / "stage_times.txt").read_text().splitlines())
    assert set(times) == set(stages(name))
    for model in ["teacher", *students(name), *PRUNED]:
        assert (work / model / "checkpoint_best.pt").stat().st_size > 0, model
    assert (work / "seqkd" / "train.selected.de" if name != "iwslt" else work / "seqkd" / "train.selected.en").exists()
    assert all((work / c / "meta.json").exists() for c in caches(name))
    if name == "multi30k_en_de":
        # TEACHER_AVERAGE=2: the average of the transformer teacher's 2 epochs against its best checkpoint, the one
        # with the higher greedy valid BLEU copied to checkpoint_teacher.pt, which every later stage uses
        log = (work / "logs" / "teacher.log").read_text()
        assert "the average of 2 checkpoints (checkpoint1.pt, checkpoint2.pt)" in log
        bleu = {w: json.loads((work / "eval" / f"teacher_{w}.valid.json").read_text())["results"][0]["bleu"]
                for w in ("best", "averaged")}
        chosen = "averaged" if bleu["averaged"] > bleu["best"] else "best"
        assert f"teacher: checkpoint_{chosen}.pt, the higher greedy valid BLEU" in log
        teacher = work / "teacher" / "checkpoint_teacher.pt"
        assert filecmp.cmp(teacher, work / "teacher" / f"checkpoint_{chosen}.pt", shallow=False)
        assert filecmp.cmp(work / "eval" / "teacher.valid.json", work / "eval" / f"teacher_{chosen}.valid.json",
                           shallow=False)  # that checkpoint's valid BLEU, not decoded a third time
        assert json.loads((work / "topk" / "meta.json").read_text())["teachers"][0]["path"] == str(teacher.resolve())
        assert "decoding with engine ctranslate2" in (work / "logs" / "seqkd_data.log").read_text()
        # PRUNE_STUDENT=student_tf_seqkd, PRUNE_OBJECTIVE=word_kd: the transformer retrained against the teacher's
        # cache over its distilled targets, at its family's learning rate
        log = (work / "logs" / "prune.log").read_text()
        assert "criterion: WordKDCriterion" in log and "retraining with the word_kd objective" in log
        assert log.count(f"'teacher_topk_path': '{work}/topk_seqkd'") >= len(PRUNED)
        assert log.count("arch='kd_transformer_e2d1_32'") >= len(PRUNED) and log.count("'lr': [0.002]") >= len(PRUNED)
        # PRUNE_SCHEDULE_EPOCHS=1: the cubic schedule over one epoch of the student's own updates
        steps = re.search(r"gradual pruning over 1 epoch\(s\) of student_tf_seqkd's data: (\d+) updates \((\d+) per epoch\)", log)
        assert steps and steps.group(1) == steps.group(2), log[:2000]
        assert log.count(f"'prune_steps': {steps.group(1)}") == len(PRUNED)
    if name == "wmt14_en_de":  # PRUNE_STUDENT=student_lstm_seqkd_seqinter: retrained with its own objective,
        log = (work / "logs" / "prune.log").read_text()  # at the students' learning rate (PRUNE_LR's default)
        assert "criterion: SeqInterCriterion" in log
        assert log.count("'lr': [0.002]") >= len(PRUNED) and "'lr': [0.0005]" not in log
    if name == "iwslt":  # PRUNE_OBJECTIVE=self_kd: against the unpruned student's own cache, written once
        log = (work / "logs" / "prune.log").read_text()
        student = (work / "pruned_student.txt").read_text().strip()
        cache = work / f"topk_self_{student}"
        meta = json.loads((cache / "meta.json").read_text())
        assert [t["path"] for t in meta["teachers"]] == [str((work / student / "checkpoint_best.pt").resolve())]
        assert "criterion: WordKDCriterion" in log and log.count(f"'teacher_topk_path': '{cache}'") >= len(PRUNED)
    print(f"{name}: smoke run took {seconds:.0f} s")


def test_smoke_table_has_every_model(smoke_run):
    name, _, _, work, _ = smoke_run
    every = models(name, work)
    results = json.loads((work / "results.json").read_text())
    for setting in ("batched", "batch1"):
        assert {r["model"] for r in results[setting]["results"]} == set(models(name, work, setting)), setting
        assert {(r["beam"], r["batch_size"]) for r in results[setting]["results"]} == (
            {(1, 64), (2, 64)} if setting == "batched" else {(1, 1), (2, 1)})
        # SPEED_ENGINES="fairseq auto": every model also through its fastest engine, on this slice of real data. The
        # fast kd_lstm decoder gives the same greedy output on every sentence and the same beam output on nearly
        # every one; CTranslate2 computes in its own order, so a near-tie of these tiny models may go the other way
        by = {(r["model"], r["engine"], r["beam"]): r for r in results[setting]["results"]}
        for model in models(name, work, setting):
            assert {e for (m, e, _) in by if m == model} == engines(name, model), (setting, model)
        for (model, engine, beam), row in by.items():
            if engine != "fairseq" and (model, "fairseq", beam) in by:  # a CTranslate2 export has no fairseq rows
                ours, theirs = (open(r["hypotheses"]).read().splitlines() for r in (row, by[model, "fairseq", beam]))
                same = sum(a == b for a, b in zip(ours, theirs))
                least = {("fast", 1): 1.0, ("fast", 2): 0.95, ("ctranslate2", 1): 0.95, ("ctranslate2", 2): 0.8}
                assert len(ours) == len(theirs) and same >= least[engine, beam] * len(ours), (
                    setting, model, engine, beam, same, len(ours))
    md = (work / "results.md").read_text()
    table = md[md.index("## BLEU and speed"):]
    for model in every:
        assert f"| {model} |" in table, model
    assert "sacreBLEU signature: `nrefs:1" in md
    # the teacher's goal (multi30k only), each distilled student against its track's NLL one (multi30k: lstm_seqkd,
    # tf_seqkd, tf_seqkd_word_kd; WMT14: the five LSTM objectives; IWSLT: lstm_seqkd), the best small student's BLEU
    # and speed (batched, batch 1), pruning (4), compression (3) and the best student in int8 (greedy, beam)
    versus_nll = {"multi30k_en_de": 3, "wmt14_en_de": 5, "iwslt": 1}[name]
    assert [t["key"] for t in results["targets"] if "_vs_nll:" in t.get("key", "")] == [
        f"{s.split('_', 2)[2]}_vs_nll:{s.split('_', 2)[1]}" for s in students(name) if not s.endswith("_nll")]
    assert len(results["targets"]) == (name == "multi30k_en_de") + versus_nll + 3 + 4 + 3 + 2
    # the best-student targets need a student 2.5x smaller than the teacher: only the multi30k run has one (the
    # others' smoke teacher is the students' size)
    measured = [t for t in results["targets"] if t["status"] != "not measured"]
    assert {t["status"] for t in measured} <= {"met", "not met"}
    assert len(results["targets"]) - len(measured) == (0 if name == "multi30k_en_de" else 3), results["targets"]
    # every BLEU difference comes with sacreBLEU's paired bootstrap test
    tested = [t for t in measured if "BLEU" in t["target"] and "teacher beam 2 >=" not in t["target"]
              and not t.get("key", "").startswith("speed_")]
    assert len(tested) == versus_nll + (name == "multi30k_en_de") + 4 + 2 + 2
    for t in tested:
        assert t["paired_bs"]["ci95"][0] <= t["paired_bs"]["delta"] <= t["paired_bs"]["ci95"][1], t
        assert f"{t['paired_bs']['delta']:+.2f}, 95% CI" in t["measured"] and "p = " in t["measured"]
    assert (work / "results.png").stat().st_size > 1000 and "![BLEU vs speed](results.png)" in md
    # the pruned models really are sparse, the compressed ones really are smaller
    rows = {r["model"]: r for r in results["batched"]["results"] if r["engine"] == "fairseq"}
    assert rows["pruned_0.0"]["params_nonzero"] > 0.99 * rows["pruned_0.0"]["params_total"]
    import torch
    for ratio in (0.5, 0.8, 0.9):
        assert rows[f"pruned_{ratio}"]["params_nonzero"] < rows["pruned_0.0"]["params_nonzero"]
        # class-blind over every weight matrix (biases and layer norms stay dense)
        state = torch.load(work / f"pruned_{ratio}" / "checkpoint_best.pt", weights_only=False)["model"]
        matrices = list({v.data_ptr(): v for v in state.values() if v.dim() >= 2}.values())  # shared once
        zeros = sum(int((v == 0).sum()) for v in matrices) / sum(v.numel() for v in matrices)
        assert ratio - 0.01 <= zeros <= ratio + 0.01, (ratio, zeros)
    assert rows["pruned_0.8_sparse_int8"]["file_size_bytes"] < 0.5 * rows["pruned_0.8"]["file_size_bytes"]


def test_smoke_rerun_skips_finished_stages(smoke_run):
    _, script, env, work, _ = smoke_run
    before = {p: p.stat().st_mtime for p in work.glob("*/checkpoint_best.pt")}
    proc = recipe(script, work, timeout=120, SMOKE=1, **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done already") == len(stages(smoke_run[0]))
    assert {p: p.stat().st_mtime for p in work.glob("*/checkpoint_best.pt")} == before


def without_transformer_students(smoke_run, tmp_path):
    """(script, env, copy): a copy of the multi30k smoke run's work without its two transformer students, for
    training them again side by side (the other smoke runs have none: skipped)."""
    name, script, env, work, _ = smoke_run
    if name != "multi30k_en_de":
        pytest.skip("the multi30k smoke run has the two transformer students")
    copy = tmp_path / "w"
    shutil.copytree(work, copy, symlinks=True)
    for s in ("student_tf_nll", "student_tf_seqkd"):
        shutil.rmtree(copy / s)
    return script, env, copy


def test_a_failed_student_side_by_side_stops_the_run_and_keeps_the_other(smoke_run, tmp_path):
    """STUDENT_JOBS=2: the two transformer students of the multi30k smoke run again side by side, one failing (its
    TRAIN_CMD exits 3): one line names it, the other finishes and keeps its stamp."""
    script, env, copy = without_transformer_students(smoke_run, tmp_path)
    fake = tmp_path / "train.sh"
    fake.write_text('#!/bin/bash\ncase "$*" in *student_tf_seqkd*) echo "no such luck" >&2; exit 3 ;; esac\n'
                    'exec fairseq-train "$@"\n')
    fake.chmod(0o755)
    proc = recipe(script, copy, timeout=300, SMOKE=1, **env, STUDENT_JOBS=2, STAGE="student_tf_nll",
                  STOP_AFTER="student_tf_seqkd", TRAIN_CMD=fake)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert errors == [f"error: stage student_tf_seqkd failed (exit 3), see {copy}/logs/student_tf_seqkd.log"], errors
    assert "side by side (STUDENT_JOBS=2), 1 thread(s) each: student_tf_nll student_tf_seqkd" in proc.stderr
    assert (copy / ".done" / "student_tf_nll").exists() and (copy / "student_tf_nll" / "checkpoint_best.pt").exists()
    assert not (copy / ".done" / "student_tf_seqkd").exists()
    assert "no such luck" in (copy / "logs" / "student_tf_seqkd.log").read_text()


def test_an_interrupted_run_stops_the_students_side_by_side(smoke_run, tmp_path):
    """Students side by side run in the background, where bash ignores SIGINT for them: Ctrl-C (SIGINT to the
    recipe's process group) must still stop both, with one line, and stamp neither."""
    script, env, copy = without_transformer_students(smoke_run, tmp_path)
    fake = tmp_path / "train.sh"  # a "training" that records its pid and waits
    fake.write_text('#!/bin/bash\nwhile [ $# -gt 0 ]; do [ "$1" = --save-dir ] && d=$2; shift; done\n'
                    'mkdir -p "$d" && echo $$ > "$d/pid" && exec sleep 120\n')
    fake.chmod(0o755)
    environ = clean_env()
    environ.update({"WORK": str(copy), "THREADS": "1", "SMOKE": "1", **env, "STUDENT_JOBS": "2",
                    "STAGE": "student_tf_nll", "STOP_AFTER": "student_tf_seqkd", "TRAIN_CMD": str(fake)})
    # SIGINT at its default in the recipe, as in a terminal: a test run started as a background job (`cmd &`) has it
    # ignored, inherited down to here, and a shell started with SIGINT ignored cannot trap it
    proc = subprocess.Popen(["bash", str(ROOT / script)], env=environ, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    pids = [copy / s / "pid" for s in ("student_tf_nll", "student_tf_seqkd")]
    deadline = time.time() + 120
    while not all(p.exists() and p.read_text().strip() for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert all(p.exists() for p in pids), "the two students did not start"
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 1, err[-3000:]
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert errors[-1] == ("error: interrupted: stopped student_tf_nll student_tf_seqkd (rerun to resume them from "
                          "their checkpoints)"), errors
    for p in pids:  # no student left training (gone, or a zombie waiting for a reaper)
        stat = pathlib.Path(f"/proc/{int(p.read_text())}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", p
    assert not (copy / ".done" / "student_tf_nll").exists() and not (copy / ".done" / "student_tf_seqkd").exists()


def test_unknown_prune_objective_is_refused_before_any_stage(tmp_path):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", SMOKE=1, PRUNE_OBJECTIVE="hinton")
    assert proc.returncode != 0
    assert "unknown PRUNE_OBJECTIVE 'hinton' (own, word_kd or self_kd)" in proc.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("env,message", [
    ({"STUDENTS": "nll"}, "student 'nll' in STUDENTS is not TRACK_OBJECTIVE (e.g. lstm_nll)"),
    ({"STUDENTS": "gpu_nll"}, "unknown student track 'gpu' (STUDENT_ARCHS: lstm=kd_lstm_1x32 tf=kd_transformer_e2d1_32)"),
    ({"STUDENTS": "tf_hinton"}, "unknown objective 'hinton' of student 'tf_hinton' (objectives: nll word_kd seqkd"),
    ({"STUDENT_ARCHS": "lstm"}, "STUDENT_ARCHS entry 'lstm' is not TRACK=ARCH"),
    ({"STUDENT_ARCHS": "big_one=kd_lstm_1x32", "STUDENTS": "lstm_nll"},
     "student track 'big_one' in STUDENT_ARCHS: a track name is letters and digits"),
    ({"TRACK_HOURS": "tf=0.2 lstm"}, "TRACK_HOURS entry 'lstm' is not TRACK=HOURS (e.g. lstm=0.2)"),
    ({"TRACK_HOURS": "gpu=0.2"}, "unknown student track 'gpu' (STUDENT_ARCHS: lstm=kd_lstm_1x32"),
    ({"TRACK_UPDATES": "tf=0.5"}, "TRACK_UPDATES entry 'tf=0.5' is not TRACK=UPDATES (e.g. lstm=800)"),
    ({"TRACK_UPDATES": "lstm=800 gpu=800"}, "unknown student track 'gpu' (STUDENT_ARCHS: lstm=kd_lstm_1x32"),
    ({"PRUNE_STUDENT": "student_tf_word_kd"},
     "PRUNE_STUDENT 'student_tf_word_kd' is not a student of this run (student_ + one of: lstm_nll lstm_seqkd"),
])
def test_bad_students_are_refused_before_any_stage(tmp_path, env, message):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", SMOKE=1, **env)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert not (tmp_path / "w").exists()


def test_prune_schedule_epochs_needs_the_students_first_epoch(tmp_path):
    """PRUNE_SCHEDULE_EPOCHS counts the student's updates per epoch from its training log: a log without epoch 1
    (the student trained elsewhere, its log lost) stops the prune stage with one line, before any training."""
    work = tmp_path / "w"
    (work / "logs").mkdir(parents=True)
    (work / "logs" / "student_lstm_nll.log").write_text("| INFO | fairseq_cli.train | no epoch lines here\n")
    proc = recipe("recipes/multi30k_en_de/run.sh", work, timeout=120, SMOKE=1, STAGE="prune",
                  PRUNE_STUDENT="student_lstm_nll", PRUNE_SCHEDULE_EPOCHS="1")
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert f"no epoch 1 of student_lstm_nll in {work}/logs/student_lstm_nll.log" in errors[0]
    assert errors[-1].startswith("error: stage prune failed")
    assert not (work / "pruned_0.0").exists() and not (work / ".done" / "prune").exists()


def test_recipes_find_the_tools_in_the_projects_venv(tmp_path):
    """`bash recipes/...` without the virtualenv activated: the tools come from ROOT/.venv/bin (make install);
    without that either, one line says how to get them."""
    (tmp_path / "project" / ".venv").mkdir(parents=True)
    (tmp_path / "project" / ".venv" / "bin").symlink_to(BIN)
    (tmp_path / "bare").mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    probe = f"source {ROOT}/recipes/lib.sh; command -v fairseq-kd-spm; command -v python3"
    found = subprocess.run(["bash", "-c", f"ROOT={tmp_path / 'project'}; {probe}"], env=env, capture_output=True,
                           text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [f"{tmp_path}/project/.venv/bin/fairseq-kd-spm", f"{tmp_path}/project/.venv/bin/python3"]
    missing = subprocess.run(["bash", "-c", f"ROOT={tmp_path / 'bare'}; {probe}"], env=env, capture_output=True,
                             text=True)
    assert missing.returncode == 1 and missing.stdout == "" and missing.stderr.strip() == (
        f"error: the fairseq-kd tools are not on PATH: run 'make install' in {tmp_path}/bare (it builds .venv/), "
        f"or install the package into your environment")


@pytest.mark.parametrize("beam", ["0", "five"])
def test_distill_beam_out_of_range_is_refused_before_any_stage(tmp_path, beam):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", SMOKE=1, DISTILL_BEAM=beam)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: DISTILL_BEAM must be a positive integer (the Seq-KD data's beam), got '{beam}'")
    assert not (tmp_path / "w" / "stage_times.txt").exists()


@pytest.mark.parametrize("knob,what", [
    ("LATENCY_SENTENCES", "the test sentences of the batch-1 speed rows, 0 for none"),
    ("STUDENT_UPDATES", "the students' updates, 0 for no limit"),
    ("TEACHER_UPDATES", "the teacher's updates, 0 for no limit"),
])
@pytest.mark.parametrize("count", ["ten", "-1", "2.5"])
def test_counts_out_of_range_are_refused_before_any_stage(tmp_path, knob, what, count):
    """0 is allowed (no batch-1 rows, no update limit); anything but a whole number would otherwise reach a stage."""
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", SMOKE=1, **{knob: count})
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == f"error: {knob} must be a non-negative integer ({what}), got '{count}'"
    assert not (tmp_path / "w" / "stage_times.txt").exists()


@pytest.mark.parametrize("jobs", ["0", "two"])
def test_student_jobs_out_of_range_is_refused_before_any_stage(tmp_path, jobs):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", SMOKE=1, STUDENT_JOBS=jobs)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: STUDENT_JOBS must be a positive integer (the students trained side by side), got '{jobs}'")
    assert not (tmp_path / "w" / "stage_times.txt").exists()


def test_unknown_stage_is_refused(tmp_path):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path, SMOKE=1, STAGE="bogus")
    assert proc.returncode != 0
    assert "unknown STAGE 'bogus'" in proc.stderr and "prepare teacher" in proc.stderr


def test_missing_multi30k_data(tmp_path):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", DATA=tmp_path / "nowhere")
    assert proc.returncode != 0
    assert f"missing input: {tmp_path / 'nowhere'}/train.en (set DATA= to the multi30k directory)" in proc.stderr
    assert not (tmp_path / "w" / ".done").exists()


def test_missing_wmt14_files_are_listed(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "newstest2014.en").write_text("a\n")
    proc = recipe("recipes/wmt14_en_de/run.sh", tmp_path / "w", RAW_DIR=tmp_path / "raw")
    assert proc.returncode != 0
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "missing WMT14 files" in line[0]
    assert "europarl-v7.de-en.en" in line[0] and "newstest2014.de" in line[0] and "newstest2014.en " not in line[0]


def test_wmt14_misaligned_corpus(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("c", "dev", "test"):
        (raw / f"{name}.en").write_text("a b\nc d\n")
        (raw / f"{name}.de").write_text("a b\nc d\n")
    (raw / "c.de").write_text("only one line\n")
    proc = recipe("recipes/wmt14_en_de/run.sh", tmp_path / "w", RAW_DIR=raw, TRAIN_CORPORA="c", DEV_SETS="dev",
                  TEST_SET="test")
    assert proc.returncode != 0
    assert f"{raw}/c.en and {raw}/c.de have different line counts: misaligned corpus" in proc.stderr
    assert "error: stage prepare failed" in proc.stderr  # a failing stage stops the recipe
    assert not (tmp_path / "w" / ".done").exists() and not (tmp_path / "w" / "teacher").exists()


def test_a_checkout_run_with_another_checkouts_package_is_refused_before_any_stage(tmp_path):
    """The tools import the installed fairseq_kd, then fairseq imports --user-dir: from a second checkout (its
    recipes, this .venv/) fairseq would refuse it mid-stage, so the recipe says so first."""
    other = tmp_path / "other_checkout"
    (other / "fairseq_kd").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(ROOT / "recipes"), str(other)], check=True)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train", "val", "test2016"):
        for lang in ("en", "de"):
            (data / f"{name}.{lang}").write_text("a b\n")
    proc = recipe(other / "recipes/multi30k_en_de/run.sh", tmp_path / "w", timeout=60, DATA=data, DRY_RUN="1")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: python3 imports fairseq_kd from {ROOT}/fairseq_kd, not from this checkout's {other}/fairseq_kd "
        f"(fairseq would refuse its --user-dir mid-stage): run 'make install' in {other} and use its .venv/")
    assert not (tmp_path / "w").exists()


def test_iwslt_th_en_needs_raw_dir(tmp_path):
    proc = recipe("recipes/iwslt/run.sh", tmp_path / "w", PAIR="th-en", RAW_DIR=tmp_path)
    assert proc.returncode != 0
    assert "missing IWSLT15 Th-En files" in proc.stderr and f"{tmp_path}/tst2013.th" in proc.stderr


# DRY_RUN=1 runs the checks of a recipe's real (not SMOKE) settings and lists its plan: the smoke runs cannot see a
# default that only the full settings have (a track share for a track the demo does not train stopped `make demo`
# before any stage)
@pytest.mark.parametrize("script,env,plan", [
    ("recipes/demo/run.sh", {},
     ["stages: prepare teacher topk student_tf_nll student_tf_word_kd compress speed report",
      "teacher: kd_transformer_e4d4_128, at most 2 epochs, 0 updates and 0 h",
      "student_tf_nll: kd_transformer_e6d1_64, at most 100 epochs, 600 updates and 0 h",
      "student_tf_word_kd: kd_transformer_e6d1_64, at most 100 epochs, 600 updates and 0 h",
      "student batch 1 (STUDENT_JOBS=2), 1 thread(s) each: student_tf_nll student_tf_word_kd\n"]),
    # the full run: budgets in updates (each track its own), hours the guard; two students at a time side by side
    ("recipes/multi30k_en_de/run.sh", {"THREADS": "2"},
     ["stages: prepare teacher seqkd_data student_lstm_nll student_lstm_seqkd student_tf_nll student_tf_seqkd "
      "prune compress speed report",
      "teacher: kd_transformer_e3d3_256, at most 100 epochs, 2130 updates and 1.0 h",
      "student_lstm_seqkd: kd_lstm_1x128, at most 100 epochs, 2400 updates and 0.3 h",
      "student_tf_seqkd: kd_transformer_e6d1_128, at most 100 epochs, 1400 updates and 0.5 h",
      "student batch 1 (STUDENT_JOBS=2), 1 thread(s) each: student_lstm_nll student_lstm_seqkd\n",
      "student batch 2 (STUDENT_JOBS=2), 1 thread(s) each: student_tf_nll student_tf_seqkd\n"]),
    # one track of the two: its own budgets, none asked for the other
    ("recipes/multi30k_en_de/run.sh", {"STUDENT_ARCHS": "tf=kd_transformer_e6d1_64", "STUDENTS": "tf_nll"},
     ["stages: prepare teacher student_tf_nll prune compress speed report",
      "student_tf_nll: kd_transformer_e6d1_64, at most 100 epochs, 1400 updates and 0.5 h"]),
    ("recipes/multi30k_en_de/run.sh", {"STUDENT_ARCHS": "lstm=kd_lstm_1x128", "STUDENTS": "lstm_nll", "TRACK_HOURS": "",
                                       "TRACK_UPDATES": "", "STUDENT_UPDATES": "700"},
     ["student_lstm_nll: kd_lstm_1x128, at most 100 epochs, 700 updates and 0.15 h"]),
    # the Seq-Inter fine-tuning: its own epochs (SEQ_INTER_EPOCHS), no update budget, after its track's Seq-KD student
    ("recipes/multi30k_en_de/run.sh", {"STUDENTS": "lstm_seqkd lstm_seqkd_seqinter", "TRACK_UPDATES": "lstm=900",
                                       "TEACHER_UPDATES": "0"},
     ["stages: prepare teacher seqkd_data student_lstm_seqkd student_lstm_seqkd_seqinter prune compress speed report",
      "teacher: kd_transformer_e3d3_256, at most 100 epochs, 0 updates and 1.0 h",
      "student_lstm_seqkd: kd_lstm_1x128, at most 100 epochs, 900 updates and 0.3 h",
      "student_lstm_seqkd_seqinter: kd_lstm_1x128, at most 1 epochs, 0 updates and 0.3 h"]),
    # students side by side: the teacher's outputs before the first student; batches of STUDENT_JOBS, each student
    # with THREADS / STUDENT_JOBS threads, the Seq-Inter fine-tuning after the Seq-KD student it starts from (which
    # trains even when not asked for)
    ("recipes/multi30k_en_de/run.sh", {"STUDENT_ARCHS": "lstm=kd_lstm_1x128", "STUDENT_JOBS": "2", "THREADS": "4",
                                       "STUDENTS": "lstm_nll lstm_seqkd_seqinter lstm_word_kd lstm_block_kd"},
     ["stages: prepare teacher seqkd_data topk student_lstm_nll student_lstm_seqkd student_lstm_seqkd_seqinter "
      "student_lstm_word_kd student_lstm_block_kd prune compress speed report",
      "student batch 1 (STUDENT_JOBS=2), 2 thread(s) each: student_lstm_nll student_lstm_seqkd\n",
      "student batch 2 (STUDENT_JOBS=2), 2 thread(s) each: student_lstm_seqkd_seqinter student_lstm_word_kd\n",
      "student batch 3 (STUDENT_JOBS=2), 4 thread(s) each: student_lstm_block_kd\n"]),
    ("recipes/multi30k_en_de/run.sh", {"STUDENT_ARCHS": "lstm=kd_lstm_1x128", "STUDENT_JOBS": "3", "THREADS": "2",
                                       "STUDENTS": "lstm_seqkd lstm_seqkd_seqinter lstm_nll"},
     ["student batch 1 (STUDENT_JOBS=3), 2 thread(s) each: student_lstm_seqkd\n",
      "student batch 2 (STUDENT_JOBS=3), 1 thread(s) each: student_lstm_seqkd_seqinter student_lstm_nll\n"]),
])
def test_dry_run_checks_the_full_settings_and_lists_the_plan(tmp_path, script, env, plan):
    proc = recipe(script, tmp_path / "w", timeout=60, DRY_RUN="1", **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in plan:
        assert line in proc.stderr, proc.stderr
    assert not (tmp_path / "w").exists()  # nothing ran, nothing written
