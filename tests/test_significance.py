"""Paired bootstrap resampling of BLEU differences (fairseq_kd/significance.py) and fairseq-kd-score --paired-bs."""
import json
import random

import pytest
import sacrebleu
from sacrebleu.significance import PairedTest

from fairseq_kd import significance
from fairseq_kd.cli import score
from fairseq_kd.errors import FairseqKDError

from helpers import error_line, run, tool

WORDS = "der die das ein eine mann frau hund katze läuft sitzt auf dem tisch im park mit einem ball".split()


def corpus(n=120, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]


def corrupt(lines, drop, seed):
    rng = random.Random(seed)
    return [" ".join(w for w in line.split() if rng.random() > drop) for line in lines]


def test_difference_is_sacrebleus_and_p_value_equals_sacrebleus_own_test():
    refs = corpus()
    a, b = corrupt(refs, 0.3, 1), corrupt(refs, 0.25, 2)
    result = significance.paired_bootstrap(a, b, refs, n_samples=300, seed=7)
    bleu_a, bleu_b = (sacrebleu.corpus_bleu(h, [refs]).score for h in (a, b))
    assert result["baseline"] == round(bleu_a, 2) and result["system"] == round(bleu_b, 2)
    assert result["delta"] == round(bleu_b - bleu_a, 2)
    assert result["ci95"][0] <= result["delta"] <= result["ci95"][1]
    test = PairedTest([("a", a), ("b", b)], {"BLEU": sacrebleu.BLEU()}, [refs], test_type="bs", n_samples=300)
    test._seed = 7  # sacreBLEU takes its seed from SACREBLEU_SEED
    _, scores = test()
    assert result["p_value"] == pytest.approx(scores["BLEU"][1].p_value, abs=1e-4)
    assert result["n_samples"] == 300 and result["signature"].startswith("nrefs:1|")


def test_identical_systems_do_not_differ():
    refs = corpus()
    a = corrupt(refs, 0.3, 1)
    result = significance.paired_bootstrap(a, list(a), refs, n_samples=200)
    assert result["delta"] == 0 and result["ci95"] == [0, 0] and result["p_value"] == 1.0


def test_a_much_better_system_is_significant_and_its_interval_excludes_zero():
    refs = corpus()
    result = significance.paired_bootstrap(corrupt(refs, 0.5, 1), corrupt(refs, 0.05, 2), refs, n_samples=200)
    assert result["delta"] > 10 and result["ci95"][0] > 0 and result["p_value"] < 0.01
    assert significance.describe(result).startswith(f"Δ +{result['delta']:.2f} (95% CI +")


def test_bad_inputs():
    refs = corpus(10)
    with pytest.raises(FairseqKDError, match="same sentences: baseline has 9, system 10, references 10"):
        significance.paired_bootstrap(refs[:9], refs, refs)
    with pytest.raises(FairseqKDError, match="at least one sentence"):
        significance.paired_bootstrap([], [], [])
    with pytest.raises(FairseqKDError, match="must be positive"):
        significance.paired_bootstrap(refs, refs, refs, n_samples=0)


def test_score_cli_paired_bs(tmp_path, capsys):
    refs = corpus()
    paths = {}
    for name, lines in (("ref", refs), ("base", corrupt(refs, 0.3, 1)), ("sys", corrupt(refs, 0.1, 2))):
        paths[name] = tmp_path / f"{name}.txt"
        paths[name].write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "compare.json"
    score.main([str(paths["base"]), str(paths["sys"]), "--text", "--ref", str(paths["ref"]), "--paired-bs",
                "--samples", "100", "--name", "base", "--json", str(out)])
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    assert [r["name"] for r in results] == ["base", "sys.txt"] and "paired_bs" not in results[0]
    test = results[1]["paired_bs"]
    assert test["baseline_name"] == "base"
    assert test["delta"] == pytest.approx(results[1]["bleu"] - results[0]["bleu"], abs=0.011)
    assert f"sys.txt: {significance.describe(test)}" in printed
    with pytest.raises(FairseqKDError, match="3 --name labels for 2 inputs"):
        score.main([str(paths["base"]), str(paths["sys"]), "--text", "--ref", str(paths["ref"]),
                    "--name", "a", "--name", "b", "--name", "c"])
    with pytest.raises(FairseqKDError, match="must be positive, got 0"):
        score.main([str(paths["base"]), str(paths["sys"]), "--text", "--ref", str(paths["ref"]), "--paired-bs",
                    "--samples", "0"])
    with pytest.raises(FairseqKDError, match="give at least two"):
        score.main([str(paths["base"]), "--text", "--ref", str(paths["ref"]), "--paired-bs"])
    short = tmp_path / "short.txt"
    short.write_text("ein hund\n", encoding="utf-8")
    with pytest.raises(FairseqKDError, match=f"1 hypotheses but 120 references: {short} does not cover"):
        score.main([str(paths["base"]), str(short), "--text", "--ref", str(paths["ref"]), "--paired-bs"])
    # a file that is not there, a directory, bytes that are not UTF-8: one line naming it (the CLI's last stderr line)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Grüße\n".encode("latin-1"))
    for bad, message in ((tmp_path / "nope.txt", "nope.txt: no such file"), (tmp_path, "is a directory, not a text file"),
                         (latin, "latin1.txt is not UTF-8 text")):
        with pytest.raises(FairseqKDError, match=message):
            score.main([str(paths["base"]), str(bad), "--text", "--ref", str(paths["ref"]), "--paired-bs"])
        with pytest.raises(FairseqKDError, match=message):
            score.main([str(paths["base"]), "--ref", str(bad)])
    proc = run([tool("fairseq-kd-score"), paths["base"], tmp_path / "missing.txt", "--text", "--ref", paths["ref"]],
               check=False)
    assert error_line(proc) == f"{tmp_path / 'missing.txt'}: no such file"
