"""fairseq-kd-speed JSON and fairseq-kd-table markdown / PNG."""
import json
import os
import statistics

import pytest

from fairseq_kd.cli import score, table
from fairseq_kd.errors import FairseqKDError

from helpers import USER_DIR, error_line, run, tool


@pytest.fixture(scope="module")
def speed_json(tiny_data, tiny_teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("speed") / "speed.json"
    ref = tiny_data.parent / "raw" / "test.tgt"
    run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--name", "teacher",
         "--gen-subset", "test", "--beam", "1", "2", "--batch-size", "1", "8", "--threads", "1", "--cpu",
         "--max-sentences", "12", "--warmup", "1", "--repeats", "2", "--ref", ref, "--output", out,
         "--hyp-dir", out.parent / "hyps"])
    return json.loads(out.read_text())


def test_speed_json_fields(speed_json, tiny_teacher):
    env, data, rows = speed_json["environment"], speed_json["data"], speed_json["results"]
    assert env["threads"] == 1 and env["torch"] and env["fairseq"] and env["cpu"] and env["timestamp"]
    assert env["visible_cores"] == len(os.sched_getaffinity(0))
    assert data["subset"] == "test" and data["sentences"] == 12 and data["repeats"] == 2
    assert [(r["beam"], r["batch_size"]) for r in rows] == [(1, 1), (1, 8), (2, 1), (2, 8)]
    for r in rows:
        assert r["model"] == "teacher" and r["file_size_bytes"] == tiny_teacher.stat().st_size
        assert 0 < r["params_nonzero"] <= r["params_total"]
        assert r["sentences"] == 12 and r["words"] > 0 and r["tokens"] >= r["words"]
        assert len(r["time_s"]) == 2 and all(t > 0 for t in r["time_s"])
        assert 0 <= r["bleu"] <= 100 and r["bleu_signature"].startswith("nrefs:1|")
        assert r["peak_rss_mb"] > 50
        # words/s is words / time, recomputed from the raw timings
        assert r["words_per_s"]["median"] == pytest.approx(statistics.median(r["words"] / t for t in r["time_s"]))
        assert r["sentences_per_s"]["min"] == pytest.approx(12 / max(r["time_s"]))
        if r["batch_size"] == 1:
            assert 0 < r["latency_ms_p50"] <= r["latency_ms_p95"]
        else:
            assert "latency_ms_p50" not in r
    # greedy and beam rows at different batch sizes decode the same sentences the same way
    assert rows[0]["bleu"] == rows[1]["bleu"]


def test_speed_hyp_dir_keeps_what_was_scored(speed_json, tiny_data, tmp_path, capsys):
    """--hyp-dir: each row's hypotheses, scored by fairseq-kd-score --text, give the row's BLEU."""
    ref = tmp_path / "ref12.txt"
    ref.write_text("".join((tiny_data.parent / "raw" / "test.tgt").read_text().splitlines(True)[:12]))
    assert speed_json["data"]["detok"] is None
    rows = speed_json["results"]
    for r in rows:
        hyps = r["hypotheses"]
        assert hyps.endswith(f"hyps/teacher.beam{r['beam']}.batch{r['batch_size']}.txt")
        assert len(open(hyps).read().splitlines()) == 12
        out = tmp_path / "bleu.json"
        score.main([hyps, "--text", "--ref", str(ref), "--json", str(out)])
        assert json.loads(out.read_text())["bleu"] == r["bleu"]
    # greedy at batch 1 and batch 8 decode the same hypotheses: no difference, p = 1
    out = tmp_path / "compare.json"
    score.main([rows[0]["hypotheses"], rows[1]["hypotheses"], "--text", "--ref", str(ref), "--paired-bs",
                "--samples", "50", "--json", str(out)])
    test = json.loads(out.read_text())[1]["paired_bs"]
    assert (test["delta"], test["ci95"], test["p_value"]) == (0, [0, 0], 1.0)


def test_speed_interleaved_repeats_give_the_same_rows(speed_json, tiny_data, tiny_teacher, tmp_path):
    """--interleave times the passes round-robin over two models; rows, order and hypotheses are unchanged."""
    out = tmp_path / "speed.json"
    run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--name", "a",
         "--path", tiny_teacher, "--name", "b", "--gen-subset", "test", "--beam", "1", "2", "--batch-size", "1", "8",
         "--threads", "1", "--cpu", "--max-sentences", "12", "--warmup", "1", "--repeats", "2", "--interleave",
         "--ref", tiny_data.parent / "raw" / "test.tgt", "--output", out])
    report = json.loads(out.read_text())
    rows = report["results"]
    assert report["data"]["interleave"] is True and speed_json["data"]["interleave"] is False
    assert [(r["model"], r["beam"], r["batch_size"]) for r in rows] == [
        (m, beam, bs) for m in "ab" for beam in (1, 2) for bs in (1, 8)]
    for r in rows:
        assert len(r["time_s"]) == 2 and r["words_per_s"]["median"] > 0
    once = {(r["beam"], r["batch_size"]): r for r in speed_json["results"]}
    for r in rows:
        assert (r["words"], r["tokens"], r["bleu"]) == tuple(once[(r["beam"], r["batch_size"])][k]
                                                               for k in ("words", "tokens", "bleu"))


def test_speed_bad_inputs(tiny_data, tmp_path):
    proc = run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tmp_path / "none.pt",
                "--output", tmp_path / "o.json"], check=False)
    assert error_line(proc) == f"checkpoint not found: {tmp_path / 'none.pt'}"
    proc = run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tmp_path / "none.pt",
                "--beam", "0", "--output", tmp_path / "o.json"], check=False)
    assert "--beam and --batch-size take values >= 1" in error_line(proc)


def test_speed_unwritable_outputs_fail_before_measuring(tiny_data, tiny_teacher, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for option in (["--output", blocker / "o.json"], ["--output", tmp_path / "o.json", "--hyp-dir", blocker / "hyps"]):
        proc = run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu",
                    "--gen-subset", "test", *option], check=False)
        expected = (f"--output: {blocker} is a file, not a directory" if option[-2] == "--output" else
                    f"--hyp-dir: cannot create the directory {blocker / 'hyps'} (Not a directory)")
        assert error_line(proc) == expected
        assert " words/s" not in proc.stdout  # nothing was measured
    # a directory that does not exist yet is created
    out = tmp_path / "new" / "o.json"
    run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu", "--gen-subset",
         "test", "--beam", "1", "--batch-size", "8", "--repeats", "1", "--max-sentences", "8", "--output", out])
    assert json.loads(out.read_text())["results"][0]["sentences"] == 8


def test_speed_empty_source_file(tiny_data, tiny_teacher, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu",
                "--source-file", empty, "--output", tmp_path / "o.json"], check=False)
    assert error_line(proc) == f"source file {empty} is empty"


def test_speed_on_raw_source_file(tiny_data, tiny_teacher, tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("s1 s2 s3\ns4 s5\n")
    out = tmp_path / "raw.json"
    run([tool("fairseq-kd-speed"), tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu",
         "--source-file", src, "--beam", "1", "--batch-size", "2", "--repeats", "1", "--output", out])
    row = json.loads(out.read_text())["results"][0]
    assert row["sentences"] == 2 and row["words"] > 0


def hand_json(path, model_rows, subset="test", threads=2):
    """Rows (model, params, nonzero, size, [(beam, bleu, words/s)]), engine fairseq unless the model is "name@engine"
    (rows of fairseq-kd-speed before --engine have no engine field: those of plain names are written without)."""
    rows = []
    for model, params, nonzero, size, entries in model_rows:
        model, _, engine = model.partition("@")
        for beam, bleu, wps in entries:
            rows.append({"model": model, **({"engine": engine} if engine else {}), "beam": beam, "batch_size": 64, "params_total": params,
                         "params_nonzero": nonzero, "file_size_bytes": size, "bleu": bleu,
                         "words_per_s": {"median": wps, "min": wps, "max": wps}})
    path.write_text(json.dumps({"environment": {"threads": threads},
                                "data": {"subset": subset, "sentences": 1000, "ref": "/r/test.de"},
                                "results": rows}))
    return path


def test_table_markdown_exact(tmp_path):
    a = hand_json(tmp_path / "a.json", [("teacher", 84_000_000, 84_000_000, 336_000_000, [(1, 17.7, 100.0), (5, 19.5, 50.0)])])
    b = hand_json(tmp_path / "b.json", [("student", 6_500_000, 1_300_000, 26_000_000, [(1, 18.5, 1000.0), (5, 18.8, 400.0)])])
    md = tmp_path / "t.md"
    png = tmp_path / "p.png"
    table.main([str(a), str(b), "--reference", "teacher", "--output-md", str(md), "--output-png", str(png)])
    assert md.read_text() == (
        "| Model | Engine | Params | Nonzero | Size (MB) | BLEU greedy | BLEU beam 5 | Words/s greedy | Words/s beam 5 "
        "| Speed-up greedy | Speed-up beam 5 | ΔBLEU greedy | ΔBLEU beam 5 |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        "| teacher | fairseq | 84.00M | 84.00M | 336.0 | 17.70 | 19.50 | 100 | 50 | 2.0x | 1.0x | -1.80 | +0.00 |\n"
        "| student | fairseq | 6.50M | 1.30M | 26.0 | 18.50 | 18.80 | 1000 | 400 | 20.0x | 8.0x | -1.00 | -0.70 |\n"
        "\n"
        "Speed-up and ΔBLEU against teacher (fairseq) with beam 5; words/s at batch size 64.\n")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_table_reference_defaults_to_teacher_beam_5_else_first_row(tmp_path):
    rows = [("student", 10, 10, 1000, [(1, 18.0, 900.0), (5, 19.0, 300.0), (8, 19.2, 200.0)]),
            ("teacher", 50, 50, 5000, [(1, 19.0, 100.0), (5, 20.0, 60.0), (8, 20.1, 40.0)])]
    a = hand_json(tmp_path / "a.json", rows)
    md = tmp_path / "t.md"
    table.main([str(a), "--output-md", str(md)])
    text = md.read_text()
    assert ("Speed-up and ΔBLEU against teacher (fairseq) with beam 5 (the default reference: the model named teacher, "
            "else the first model); words/s at batch size 64.") in text
    assert "| student | fairseq | 0.0k | 0.0k | 0.0 | 18.00 | 19.00 | 900 | 300 | 15.0x | 5.0x | -2.00 | -1.00 |" in text
    b = hand_json(tmp_path / "b.json", [("big", *rows[1][1:]), ("small", *rows[0][1:])])
    table.main([str(b), "--output-md", str(md)])
    assert "against big (fairseq) with beam 5 (the default reference" in md.read_text()
    assert "| big | fairseq | 0.1k | 0.1k | 0.0 | 19.00 | 20.00 | 100 | 60 | 1.7x | 1.0x | -1.00 | +0.00 |" in md.read_text()


def test_table_speedups_across_engines(tmp_path):
    """One row per model and engine; speed-ups against the reference's fairseq rows (or --reference-engine)."""
    a = hand_json(tmp_path / "a.json", [
        ("teacher@fairseq", 50, 50, 5000, [(1, 19.0, 100.0), (5, 20.0, 50.0)]),
        ("teacher@fast", 50, 50, 5000, [(1, 19.0, 400.0), (5, 20.0, 100.0)]),
        ("student@fast", 10, 10, 1000, [(1, 18.0, 2000.0), (5, 18.5, 500.0)])])
    md = tmp_path / "t.md"
    table.main([str(a), "--output-md", str(md)])
    text = md.read_text()
    assert "| teacher | fast | 0.1k | 0.1k | 0.0 | 19.00 | 20.00 | 400 | 100 | 8.0x | 2.0x | -1.00 | +0.00 |" in text
    assert "| student | fast | 0.0k | 0.0k | 0.0 | 18.00 | 18.50 | 2000 | 500 | 40.0x | 10.0x | -2.00 | -1.50 |" in text
    table.main([str(a), "--output-md", str(md), "--reference-engine", "fast"])
    assert "| student | fast | 0.0k | 0.0k | 0.0 | 18.00 | 18.50 | 2000 | 500 | 20.0x | 5.0x | -2.00 | -1.50 |" in md.read_text()
    with pytest.raises(FairseqKDError, match="reference 'teacher' has no rows of engine ctranslate2"):
        table.main([str(a), "--output-md", str(md), "--reference-engine", "ctranslate2"])


def test_pareto_front():
    # (speed, bleu): c is beaten by b on both; a is the best BLEU; b is the fastest
    assert table.pareto_front([(1, 20), (10, 18), (5, 17)]) == [0, 1]


def test_table_refuses_mixed_test_sets(tmp_path):
    a = hand_json(tmp_path / "a.json", [("teacher", 1, 1, 1, [(5, 10.0, 1.0)])], subset="test")
    b = hand_json(tmp_path / "b.json", [("student", 1, 1, 1, [(5, 10.0, 1.0)])], subset="valid")
    with pytest.raises(FairseqKDError, match="not comparable .*subset"):
        table.main([str(a), str(b), "--reference", "teacher", "--output-md", str(tmp_path / "t.md")])
    table.main([str(a), str(b), "--reference", "teacher", "--output-md", str(tmp_path / "t.md"), "--allow-mixed"])
    assert "Warning: mixed measurement settings (subset)" in (tmp_path / "t.md").read_text()


def test_table_refuses_mixed_threads(tmp_path):
    a = hand_json(tmp_path / "a.json", [("teacher", 1, 1, 1, [(5, 10.0, 1.0)])], threads=1)
    b = hand_json(tmp_path / "b.json", [("student", 1, 1, 1, [(5, 10.0, 1.0)])], threads=2)
    with pytest.raises(FairseqKDError, match="threads"):
        table.main([str(a), str(b), "--reference", "teacher", "--output-md", str(tmp_path / "t.md")])
