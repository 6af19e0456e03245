"""The README's "Distill your own model" block, run as it is on tiny sentencepiece data with a tiny transformer
teacher: if a command or an option in it breaks, this test does."""
import json
import re
import subprocess

import pytest

from helpers import BIN, ROOT, USER_DIR, clean_env, make_corpus, run, tool

pytestmark = pytest.mark.slow


def walkthrough():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```\n<!-- /walkthrough -->", readme, re.S)
    assert block, "the README's walkthrough block is gone"
    return block.group(1)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Raw text, its sentencepiece model, the binarized data with a joined dictionary, and a teacher."""
    d = tmp_path_factory.mktemp("readme")
    raw = make_corpus(d / "raw", n_train=400)
    run([tool("fairseq-kd-spm"), "train", "--input", raw / "train.src", raw / "train.tgt", "--model-prefix",
         d / "spm", "--vocab-size", "20", "--model-type", "unigram", "--character-coverage", "1.0", "--threads", "1"])
    splits = [f"{s}.{l}" for s in ("train", "valid", "test") for l in ("src", "tgt")]
    run([tool("fairseq-kd-spm"), "encode", "--model", d / "spm.model", "--inputs", *[raw / x for x in splits],
         "--outputs", *[raw / f"sub.{x}" for x in splits]])
    run([tool("fairseq-preprocess"), "-s", "src", "-t", "tgt", "--trainpref", raw / "sub.train", "--validpref",
         raw / "sub.valid", "--testpref", raw / "sub.test", "--destdir", d / "bin", "--joined-dictionary",
         "--workers", "1"])
    run([tool("fairseq-train"), d / "bin", "--user-dir", USER_DIR, "--arch", "kd_transformer_e2d2_64",
         "--share-all-embeddings", "--optimizer", "adam", "--lr", "0.005", "--max-tokens", "1000", "--max-epoch", "6",
         "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", "--save-dir", d / "teacher",
         "--no-epoch-checkpoints", "--no-progress-bar", "--seed", "1", "--num-workers", "0"])
    return d, raw


def test_readme_walkthrough_runs_as_written(inputs):
    d, raw = inputs
    kd = d / "kd"
    env = clean_env()
    env.update({"DATA": str(d / "bin"), "TEACHER": str(d / "teacher" / "checkpoint_best.pt"),
                "SPM": str(d / "spm.model"), "SRC_TEXT": str(raw / "test.src"), "REF": str(raw / "test.tgt"),
                "KD": str(kd), "ARCH": "kd_transformer_e2d1_32", "EPOCHS": "2", "PRUNE_EPOCHS": "1",
                "PATH": f"{BIN}:{env['PATH']}"})
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-5000:]
    # 1. the distilled corpus and the cache over it
    assert len((kd / "seqkd" / "train.src").read_text().splitlines()) == 400
    assert json.loads((kd / "topk" / "meta.json").read_text())["k"] == 8
    # 3. the pruned student really is 80 % zeros where it prunes (the masks held through retraining)
    import torch
    state = torch.load(kd / "pruned" / "checkpoint_best.pt", weights_only=False)["model"]
    matrices = list({v.data_ptr(): v for v in state.values() if v.dim() >= 2}.values())  # shared once
    zeros = sum(int((v == 0).sum()) for v in matrices) / sum(v.numel() for v in matrices)
    assert 0.79 <= zeros <= 0.81, zeros
    # 4.-5. the CTranslate2 model translates every test line
    assert (kd / "student_ct2" / "model.bin").exists()
    assert len((kd / "test.hyp").read_text().splitlines()) == len((raw / "test.src").read_text().splitlines())
    # 6. every model with fairseq and its fastest engine, in the table
    rows = json.loads((kd / "speed.json").read_text())["results"]
    engines = {(r["model"], r["engine"]) for r in rows}
    assert engines == {("teacher", "fairseq"), ("teacher", "ctranslate2"), ("student", "fairseq"),
                       ("student", "ctranslate2"), ("pruned_small", "fairseq")}
    table = (kd / "table.md").read_text()
    assert all(f"| {m} |" in table for m in ("teacher", "student", "pruned_small"))
    assert (kd / "pareto.png").stat().st_size > 1000
