"""Shared fixtures: a tiny synthetic translation task, binarized with fairseq-preprocess, and a
tiny teacher trained on it. Everything runs through the real command-line tools in subprocesses,
with the virtualenv's bin/ first on PATH and no special environment variables."""
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
USER_DIR = str(ROOT / "fairseq_kd")
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent / "shared" / "data"


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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    raw = make_corpus(root / "raw")
    return preprocess(raw, root / "bin")


@pytest.fixture(scope="session")
def tiny_teacher(tiny_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("teacher")
    train(tiny_data, save, "--arch", "kd_lstm_1x32", "--encoder-embed-dim", "48",
          "--dropout", "0", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", epochs=20)
    return save / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def tiny_task(tiny_data):
    """An in-process fairseq translation task over the tiny data (for building criterions)."""
    import fairseq_kd  # noqa: F401
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(tiny_data), "--task", "translation", "-s", "src", "-t", "tgt",
                                                "--arch", "kd_lstm_1x32"])
    return tasks.setup_task(convert_namespace_to_omegaconf(args).task)
