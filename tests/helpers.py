"""Helpers shared by the tests (and benchmarks/exit_abort_stress.py): the real command-line tools run in
subprocesses with the virtualenv's bin/ first on PATH, a tiny synthetic translation corpus, in-process
builders of models and batches, and parsers of the tools' output."""
import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
USER_DIR = str(ROOT / "fairseq_kd")
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ERROR_PREFIX = "fairseq_kd: error: "


def tool(name):
    return str(BIN / name)


def clean_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCH_", "FAIRSEQ"))}
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run(cmd, cwd=None, check=True, timeout=600):
    """Run a command; on failure show its output in the assertion."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd[0]} exited {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n"
                             f"--- stderr\n{proc.stderr[-5000:]}")
    return proc


def error_line(proc):
    """The one-line error a tool ends with on bad input: it failed (not by a signal), its last stderr line is
    `fairseq_kd: error: MESSAGE`; returns MESSAGE."""
    assert proc.returncode > 0, (proc.returncode, proc.stderr[-2000:])
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(ERROR_PREFIX), proc.stderr[-2000:]
    return last[len(ERROR_PREFIX):]


def hypotheses(stdout):
    """fairseq-generate's `H-<id>\\t<score>\\t<text>` lines as {id: text}."""
    hyps = {}
    for line in stdout.splitlines():
        if line.startswith("H-"):
            head, _score, text = (line.split("\t") + [""])[:3]
            hyps[int(head[2:])] = text
    return hyps


def synthetic_pairs(n, seed, vocab=16, min_len=3, max_len=8):
    """Source: random words s0..s15; target: the reversed sequence mapped to t0..t15."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = [rng.randrange(vocab) for _ in range(rng.randint(min_len, max_len))]
        pairs.append((" ".join(f"s{w}" for w in words), " ".join(f"t{w}" for w in reversed(words))))
    return pairs


def write_split(directory: Path, prefix: str, pairs):
    (directory / f"{prefix}.src").write_text("".join(s + "\n" for s, _ in pairs))
    (directory / f"{prefix}.tgt").write_text("".join(t + "\n" for _, t in pairs))


def make_corpus(directory: Path, n_train=400, seed=0):
    directory.mkdir(parents=True, exist_ok=True)
    write_split(directory, "train", synthetic_pairs(n_train, seed))
    write_split(directory, "valid", synthetic_pairs(24, seed + 1))
    write_split(directory, "test", synthetic_pairs(24, seed + 2))
    return directory


def preprocess(raw: Path, dest: Path, extra=()):
    run([tool("fairseq-preprocess"), "-s", "src", "-t", "tgt", "--trainpref", raw / "train",
         "--validpref", raw / "valid", "--testpref", raw / "test", "--destdir", dest, "--workers", "1", *extra])
    return dest


TINY_TRAIN = ["--optimizer", "adam", "--lr", "0.01", "--max-tokens", "300", "--cpu", "--no-progress-bar",
              "--log-interval", "5", "--seed", "1", "--num-workers", "0", "--no-epoch-checkpoints"]


def train(data: Path, save_dir: Path, *args, epochs=3):
    return run([tool("fairseq-train"), data, "--user-dir", USER_DIR, "--save-dir", save_dir,
                "--max-epoch", str(epochs), *TINY_TRAIN, *args])


def build_model(task, arch="kd_lstm_1x32", seed=0, **overrides):
    """A model of a registered architecture, built in-process with the architecture's defaults."""
    import torch

    import fairseq_kd  # noqa: F401  (registers kd_lstm, word_kd, ...)
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY

    torch.manual_seed(seed)
    args = argparse.Namespace(arch=arch, **overrides)
    ARCH_CONFIG_REGISTRY[arch](args)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, task)


def criterion(name, task, teacher=None, **fields):
    """A registered criterion built in-process from its dataclass config: its defaults, `fields` over them (and
    sentence_avg=False, train_subset="train" for the fields fairseq fills from other groups)."""
    import dataclasses

    import fairseq_kd  # noqa: F401
    from fairseq.criterions import CRITERION_DATACLASS_REGISTRY, CRITERION_REGISTRY

    config = CRITERION_DATACLASS_REGISTRY[name]
    known = {f.name for f in dataclasses.fields(config)}
    cfg = config(**{k: v for k, v in {"sentence_avg": False, "train_subset": "train"}.items() if k in known}, **fields)
    return CRITERION_REGISTRY[name](cfg, task, **({} if teacher is None else {"teacher": teacher}))


def sharpen(model, factor=200.0):
    """Scale the output layer so the model's distributions are far from uniform (KL values well above fp32 noise)."""
    import torch

    with torch.no_grad():
        model.decoder.output_projection.weight.mul_(factor)
    return model


def batch(task, split="valid", n=6):
    task.load_dataset(split)
    dataset = task.dataset(split)
    return dataset.collater([dataset[i] for i in range(n)])
