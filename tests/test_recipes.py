"""The recipes end to end: SMOKE=1 runs every stage of each recipe on tiny data and tiny models, then the
checks here read what the stages wrote. Also: a rerun skips finished stages, bad inputs stop with one message."""
import json
import subprocess
import time

import pytest

from helpers import ROOT, SHARED_DATA, clean_env

RECIPES = {
    # the multi30k smoke run prunes the Seq-Inter student (retrained with seq_inter), the others the auto choice;
    # the WMT14 one retrains it with word_kd, the IWSLT one with word_kd against the unpruned student (self_kd)
    "multi30k_en_de": ("recipes/multi30k_en_de/run.sh", {"PRUNE_STUDENT": "student_seqkd_seqinter"}),
    "wmt14_en_de": ("recipes/wmt14_en_de/run.sh", {"PRUNE_OBJECTIVE": "word_kd"}),
    "iwslt": ("recipes/iwslt/run.sh", {"PAIR": "de-en", "PRUNE_OBJECTIVE": "self_kd"}),
}
STUDENTS = ["student_nll", "student_word_kd", "student_seqkd", "student_seqkd_seqinter", "student_seqkd_word_kd",
            "student_block_kd"]
PRUNED = ["pruned_0.0", "pruned_0.5", "pruned_0.8", "pruned_0.9"]
MODELS = ["teacher", *STUDENTS, *PRUNED, "pruned_0.8_sparse", "pruned_0.8_sparse_int8"]
STAGES = ["prepare", "teacher", "student_nll", "topk", "student_word_kd", "seqkd_data", "student_seqkd",
          "student_seqkd_seqinter", "topk_seqkd", "student_seqkd_word_kd", "student_block_kd", "prune", "compress",
          "speed", "report"]


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
    assert sorted(p.name for p in (work / ".done").iterdir()) == sorted(STAGES)
    times = dict(line.split() for line in (work / "stage_times.txt").read_text().splitlines())
    assert set(times) == set(STAGES)
    for model in ["teacher", *STUDENTS, *PRUNED]:
        assert (work / model / "checkpoint_best.pt").stat().st_size > 0, model
    assert (work / "seqkd" / "train.selected.de" if name != "iwslt" else work / "seqkd" / "train.selected.en").exists()
    assert (work / "topk" / "meta.json").exists() and (work / "topk_seqkd" / "meta.json").exists()
    if name == "multi30k_en_de":  # PRUNE_STUDENT=student_seqkd_seqinter: retrained with its own objective,
        log = (work / "logs" / "prune.log").read_text()  # at the students' learning rate (PRUNE_LR's default)
        assert "criterion: SeqInterCriterion" in log
        assert log.count("'lr': [0.002]") >= len(PRUNED) and "'lr': [0.0005]" not in log
    if name == "wmt14_en_de":  # PRUNE_OBJECTIVE=word_kd: against the teacher's cache over the student's targets
        log = (work / "logs" / "prune.log").read_text()
        assert "criterion: WordKDCriterion" in log and "retraining with the word_kd objective" in log
        student = (work / "pruned_student.txt").read_text().strip()
        cache = "topk" if student in ("student_seqkd_seqinter", "student_nll", "student_word_kd", "student_block_kd") \
            else "topk_seqkd"
        assert f"'teacher_topk_path': '{work}/{cache}'" in log
    if name == "iwslt":  # PRUNE_OBJECTIVE=self_kd: against the unpruned student's own cache, written once
        log = (work / "logs" / "prune.log").read_text()
        student = (work / "pruned_student.txt").read_text().strip()
        cache = work / f"topk_self_{student}"
        meta = json.loads((cache / "meta.json").read_text())
        assert [t["path"] for t in meta["teachers"]] == [str((work / student / "checkpoint_best.pt").resolve())]
        assert "criterion: WordKDCriterion" in log and log.count(f"'teacher_topk_path': '{cache}'") >= len(PRUNED)
    print(f"{name}: smoke run took {seconds:.0f} s")


def test_smoke_table_has_every_model(smoke_run):
    _, _, _, work, _ = smoke_run
    results = json.loads((work / "results.json").read_text())
    for setting in ("batched", "batch1"):
        models = {r["model"] for r in results[setting]["results"]}
        assert models == set(MODELS), setting
        assert {(r["beam"], r["batch_size"]) for r in results[setting]["results"]} == (
            {(1, 64), (2, 64)} if setting == "batched" else {(1, 1), (2, 1)})
        # SPEED_ENGINES="fairseq auto": every kd_lstm model also through the fast decoder, on this slice of real
        # data: the same greedy output on every sentence, and the same beam output on nearly every one
        by = {(r["model"], r["engine"], r["beam"]): r for r in results[setting]["results"]}
        assert {e for (_, e, _) in by} == {"fairseq", "fast"} and len(by) == 4 * len(MODELS)
        for (model, engine, beam), row in by.items():
            if engine == "fast":
                ours, theirs = (open(r["hypotheses"]).read().splitlines() for r in (row, by[model, "fairseq", beam]))
                same = sum(a == b for a, b in zip(ours, theirs))
                assert len(ours) == len(theirs) and same >= (len(ours) if beam == 1 else 0.95 * len(ours)), (
                    setting, model, beam, same, len(ours))
    md = (work / "results.md").read_text()
    table = md[md.index("## BLEU and speed"):]
    for model in MODELS:
        assert f"| {model} |" in table, model
    assert "sacreBLEU signature: `nrefs:1" in md
    assert {t["status"] for t in results["targets"]} <= {"met", "not met"} and len(results["targets"]) == 13
    # the BLEU differences of the pruning and compression targets come with sacreBLEU's paired bootstrap test
    tested = [t for t in results["targets"] if "pruned within" in t["target"] or "loses <=" in t["target"]]
    assert len(tested) == 6
    for t in tested:
        assert t["paired_bs"]["ci95"][0] <= t["paired_bs"]["delta"] <= t["paired_bs"]["ci95"][1], t
        assert f"{t['paired_bs']['delta']:+.2f}, 95% CI" in t["measured"] and "p = " in t["measured"]
    assert (work / "results.png").stat().st_size > 1000 and "![BLEU vs speed](results.png)" in md
    # the pruned models really are sparse, the compressed ones really are smaller
    rows = {r["model"]: r for r in results["batched"]["results"] if r["engine"] == "fairseq"}
    assert rows["pruned_0.0"]["params_nonzero"] > 0.99 * rows["pruned_0.0"]["params_total"]
    for ratio in (0.5, 0.8, 0.9):
        r = rows[f"pruned_{ratio}"]
        assert r["params_nonzero"] <= (1 - ratio + 0.01) * r["params_total"]
    assert rows["pruned_0.8_sparse_int8"]["file_size_bytes"] < 0.5 * rows["pruned_0.8"]["file_size_bytes"]


def test_smoke_rerun_skips_finished_stages(smoke_run):
    _, script, env, work, _ = smoke_run
    before = {p: p.stat().st_mtime for p in work.glob("*/checkpoint_best.pt")}
    proc = recipe(script, work, timeout=120, SMOKE=1, **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done already") == len(STAGES)
    assert {p: p.stat().st_mtime for p in work.glob("*/checkpoint_best.pt")} == before


def test_unknown_prune_objective_is_refused_before_any_stage(tmp_path):
    proc = recipe("recipes/multi30k_en_de/run.sh", tmp_path / "w", SMOKE=1, PRUNE_OBJECTIVE="hinton")
    assert proc.returncode != 0
    assert "unknown PRUNE_OBJECTIVE 'hinton' (own, word_kd or self_kd)" in proc.stderr
    assert not (tmp_path / "w").exists()


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


def test_iwslt_th_en_needs_raw_dir(tmp_path):
    proc = recipe("recipes/iwslt/run.sh", tmp_path / "w", PAIR="th-en", RAW_DIR=tmp_path)
    assert proc.returncode != 0
    assert "missing IWSLT15 Th-En files" in proc.stderr and f"{tmp_path}/tst2013.th" in proc.stderr
