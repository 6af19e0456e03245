"""Stress test for aborts at interpreter exit: many short fairseq-train runs on a loaded machine.

fairseq's BufferedIterator prefetches batches in a daemon thread (fairseq/data/iterators.py,
BackgroundConsumer). When training stops at --max-update, that thread is still alive. If the
interpreter finalizes while the thread is inside a torch operator that released the GIL, the thread's
return into Python ends in pthread_exit, whose forced unwind through torch's noexcept C++ frames calls
std::terminate: "terminate called without an active exception", exit status -6 (pytorch/pytorch#38228).
A loaded machine widens the window. fairseq_kd stops and joins those threads at exit (fairseq_kd/exit_threads.py).

Two workloads, each run in both conditions, interleaved so that they share the same load:
  train      a 1-update fairseq-train on a tiny synthetic corpus, as in the test suite's fixtures (the
             abort seen in CI); realistic, and rare: the window is a few milliseconds
  prefetch   a fairseq BufferedIterator read for one batch and left, as fairseq-train leaves it at
             --max-update, over batches that each spend ~10 ms in a GIL-releasing torch op (the window widened)
Conditions:
  fairseq      fairseq alone (fairseq-train without --user-dir; fairseq_kd before this fix did not touch
               these threads, so this is the "before")
  fairseq_kd   the same with fairseq_kd imported (--user-dir fairseq_kd): the "after"
--hogs busy-loop processes and --jobs concurrent runs keep both cores saturated.

    python benchmarks/exit_abort_stress.py --runs 100 --jobs 2 --hogs 1 --output docs/results/exit_abort_stress.json

writes the JSON (every run's exit status) and, beside it, the same summary as markdown (.md);
`--render JSON` writes the markdown of an earlier run again.
"""
import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from helpers import make_corpus, preprocess  # noqa: E402  (the test suite's synthetic corpus)

BIN = Path(sys.executable).parent
TRAIN = ["--arch", "lstm", "--encoder-embed-dim", "24", "--encoder-hidden-size", "24", "--decoder-embed-dim", "24",
         "--decoder-hidden-size", "24", "--decoder-out-embed-dim", "24", "--criterion", "cross_entropy",
         "--optimizer", "adam", "--lr", "0.01", "--max-tokens", "300", "--cpu", "--no-progress-bar", "--seed", "1",
         "--num-workers", "0", "--no-epoch-checkpoints", "--max-update", "1", "--max-epoch", "1"]


def hog(stop_at):
    while time.time() < stop_at:
        pass


def prefetch_child(with_plugin):
    """The prefetch workload, run as a child process: read one batch of a BufferedIterator, then exit."""
    import torch
    from fairseq.data.iterators import BufferedIterator

    if with_plugin:
        import fairseq_kd  # noqa: F401

    matrix = torch.randn(400, 400)

    class Batches:
        def __len__(self):
            return 1000

        def __iter__(self):
            return (matrix @ matrix for _ in range(1000))

    next(iter(BufferedIterator(2, Batches())))
    print("done prefetch")


def one_run(data, work, index, workload, condition):
    save = work / f"{workload}{index}{condition}"
    if workload == "train":
        cmd = [str(BIN / "fairseq-train"), str(data), "--save-dir", str(save), *TRAIN]
        if condition == "fairseq_kd":
            cmd += ["--user-dir", str(ROOT / "fairseq_kd")]
    else:
        cmd = [sys.executable, __file__, "--prefetch-child", condition]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    start = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    finished = ("done prefetch" in out) if workload == "prefetch" else (
        "done training" in out and (save / "checkpoint_last.pt").exists())
    return {"index": index, "workload": workload, "condition": condition, "returncode": proc.returncode,
            "finished_work": finished,
            "terminate_message": "terminate called" in proc.stderr, "seconds": round(time.time() - start, 2),
            "stderr_tail": proc.stderr.strip().splitlines()[-1:] if proc.returncode else []}


def markdown(report):
    lines = ["# Aborts at exit: fairseq's prefetch thread, with and without fairseq_kd", "",
             f"Command: `{report['command']}`  ", f"{report['jobs']} runs at a time beside {report['hogs']} busy-loop "
             f"process(es) on {report['machine']['cpus']} cores, Python {report['machine']['python']}; "
             f"wall time {report['wall_seconds']:.0f} s. Each run is one process; see the script's docstring.", "",
             "| workload | condition | runs | aborts (exit -6) | of them after finishing their work | non-zero exits |",
             "|---|---|---|---|---|---|"]
    for key, s in report["summary"].items():
        workload, condition = key.split(" ")
        lines.append(f"| {workload} | {condition} | {s['runs']} | {s['aborts']} | {s['aborted_after_finishing']} "
                     f"| {s['nonzero_exit']} |")
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=200, help="runs per condition")
    p.add_argument("--jobs", type=int, default=2, help="concurrent runs")
    p.add_argument("--hogs", type=int, default=2, help="busy-loop processes beside the runs")
    p.add_argument("--workloads", nargs="+", default=["train", "prefetch"], choices=["train", "prefetch"])
    p.add_argument("--conditions", nargs="+", default=["fairseq", "fairseq_kd"], choices=["fairseq", "fairseq_kd"])
    p.add_argument("--output", help="JSON report")
    p.add_argument("--render", metavar="JSON", help="only write the markdown of an earlier run's JSON")
    p.add_argument("--prefetch-child", choices=["fairseq", "fairseq_kd"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.prefetch_child:
        return prefetch_child(a.prefetch_child == "fairseq_kd")
    if a.render:
        return Path(a.render).with_suffix(".md").write_text(markdown(json.loads(Path(a.render).read_text())))
    if not a.output:
        p.error("--output is required")
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = preprocess(make_corpus(work / "raw"), work / "bin")
        schedule = [(i, w, c) for i in range(a.runs) for w in a.workloads for c in a.conditions]  # interleaved
        hogs = [mp.Process(target=hog, args=(time.time() + 24 * 3600,), daemon=True) for _ in range(a.hogs)]
        for h in hogs:
            h.start()
        start = time.time()
        try:
            with ThreadPoolExecutor(a.jobs) as pool:
                runs = list(pool.map(lambda iwc: one_run(data, work, *iwc), schedule))
        finally:
            for h in hogs:
                h.terminate()
    summary = {}
    for w, c in [(w, c) for w in a.workloads for c in a.conditions]:
        mine = [r for r in runs if r["condition"] == c and r["workload"] == w]
        summary[f"{w} {c}"] = {"runs": len(mine), "nonzero_exit": sum(r["returncode"] != 0 for r in mine),
                      "aborts": sum(r["returncode"] in (-6, 134) for r in mine),
                      "terminate_message": sum(r["terminate_message"] for r in mine),
                      "aborted_after_finishing": sum(r["returncode"] != 0 and r["finished_work"] for r in mine)}
    report = {"command": " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]), "summary": summary,
              "jobs": a.jobs, "hogs": a.hogs, "wall_seconds": round(time.time() - start, 1),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
              "runs": runs}
    out.write_text(json.dumps(report, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    for c, s in summary.items():
        print(f"{c:>19}: {s['aborts']} aborts (exit -6) in {s['runs']} runs; {s['aborted_after_finishing']} after "
              f"finishing their work; {s['nonzero_exit']} non-zero exits")
    print(f"wall {report['wall_seconds']} s -> {out}")


if __name__ == "__main__":
    main()
