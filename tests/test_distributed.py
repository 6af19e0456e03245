"""word_kd under fairseq's own multi-process data-parallel training on CPU: two ranks, gloo, one process per
rank (--distributed-no-spawn: on a machine without GPUs fairseq's spawner starts zero workers), legacy_ddp
(pytorch_ddp passes device_ids, which CPU modules reject)."""
import re
import socket
import subprocess

import torch

from helpers import TINY_TRAIN, USER_DIR, clean_env, tool


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_word_kd_on_two_cpu_processes(tiny_data, tiny_teacher, tmp_path):
    port = free_port()
    cmd = [tool("fairseq-train"), str(tiny_data), "--user-dir", USER_DIR, "--arch", "kd_lstm_1x32",
           "--criterion", "word_kd", "--teacher-path", str(tiny_teacher), "--kd-alpha", "0.5",
           "--save-dir", str(tmp_path / "ckpt"), "--max-update", "6", *TINY_TRAIN,
           "--distributed-world-size", "2", "--distributed-init-method", f"tcp://127.0.0.1:{port}",
           "--distributed-backend", "gloo", "--distributed-no-spawn", "--ddp-backend", "legacy_ddp"]
    procs = [subprocess.Popen(cmd + ["--distributed-rank", str(rank)], env=clean_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for rank, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"rank {rank} exited {p.returncode}:\n{log[-4000:]}"
    both = "\n".join(logs)
    assert "distributed init (rank 0)" in both and "distributed init (rank 1)" in both
    assert "training on 2 devices" in logs[0]
    # fairseq wraps the model it trains; the teacher lives in the criterion as plain tensors, never a module
    assert "LegacyDistributedDataParallel" in both or "legacy_ddp" in both
    assert re.search(r"criterion: WordKDCriterion", logs[0])
    assert "done training" in logs[0] and "num_updates 6" in logs[0]

    state = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu", weights_only=False)
    keys = set(state["model"])
    assert keys and not any("teacher" in k for k in keys)
    student_params = int(re.search(r"num\. shared model params: ([\d,]+)", logs[0]).group(1).replace(",", ""))
    assert sum(v.numel() for v in state["model"].values()) == student_params  # nothing of the teacher saved
    proc = subprocess.run([tool("fairseq-generate"), str(tiny_data), "--user-dir", USER_DIR, "--path",
                           str(tmp_path / "ckpt" / "checkpoint_last.pt"), "--gen-subset", "valid", "--beam", "2",
                           "--cpu", "--max-tokens", "500"], env=clean_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Translated 24 sentences" in proc.stderr
