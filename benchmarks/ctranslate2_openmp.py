"""CTranslate2's decoding speed in a process that also holds torch, by which library's OpenMP runtime loads first
(fairseq_kd/openmp_first.py):

    python benchmarks/ctranslate2_openmp.py MODEL_DIR SOURCE_FILE --output docs/results/ctranslate2_openmp/openmp.json

MODEL_DIR is a CTranslate2 model (fairseq-kd-export); SOURCE_FILE holds subword-tokenized source sentences, one a
line (e.g. the recipe's raw/valid.sub.en). Each case runs in a fresh Python process, greedy, in length-sorted batches
of --batch-size sentences, after one untimed batch, with intra_threads=--threads:

  ctranslate2_alone       no torch in the process
  torch_idle              torch imported first, no torch op run
  torch_pool              torch imported first and one parallel matmul run (its thread pool exists)
  torch_pool_1_thread     the same with torch.set_num_threads(1) before that matmul
  ctranslate2_first       ctranslate2 imported before torch, then the matmul (what importing fairseq_kd does)
  second_translator       no torch; a second Translator of the model decodes one batch first and stays loaded
  second_deleted          the same, the second Translator deleted before the timing
  threads_over_cores      no torch; one Translator with intra_threads = the cores + 1

Writes every case's target tokens/s, wall and CPU seconds as JSON and prints them.
"""
import argparse
import json
import subprocess
import sys

from fairseq_kd.outputs import atomic_write_text

CASE = r"""
import json, sys, time
case, model, source, batch_size, threads = sys.argv[1:6]
batch_size, threads = int(batch_size), int(threads)
if case == "ctranslate2_first":
    import ctranslate2
if case in ("torch_idle", "torch_pool", "torch_pool_1_thread", "ctranslate2_first"):
    import torch
    if case == "torch_pool_1_thread":
        torch.set_num_threads(1)
    if case != "torch_idle":
        x = torch.randn(500, 500)
        (x @ x).sum()
import os
import ctranslate2
lines = [line.split() for line in open(source, encoding="utf-8")]
order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
batches = [[lines[j] for j in order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
if case == "threads_over_cores":
    threads = len(os.sched_getaffinity(0)) + 1
translator = ctranslate2.Translator(model, device="cpu", inter_threads=1, intra_threads=threads)
if case in ("second_translator", "second_deleted"):
    other = ctranslate2.Translator(model, device="cpu", inter_threads=1, intra_threads=threads)
    other.translate_batch(batches[0], beam_size=1)
    if case == "second_deleted":
        del other
translator.translate_batch(batches[0], beam_size=1)
start, cpu, tokens = time.perf_counter(), time.process_time(), 0
for batch in batches:
    for r in translator.translate_batch(batch, beam_size=1, max_decoding_length=256):
        tokens += len(r.hypotheses[0])
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"case": case, "intra_threads": threads, "tokens": tokens, "wall_s": wall, "cpu_s": cpu, "tokens_per_s": tokens / wall}))
"""
CASES = ("ctranslate2_alone", "torch_idle", "torch_pool", "torch_pool_1_thread", "ctranslate2_first", "second_translator",
         "second_deleted", "threads_over_cores")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("source")
    p.add_argument("--batch-size", type=int, default=150)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    rows = []
    for case in CASES:
        out = subprocess.run([sys.executable, "-c", CASE, case, a.model, a.source, str(a.batch_size), str(a.threads)],
                             capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{case:22s} {r['tokens_per_s']:8.0f} tokens/s  wall {r['wall_s']:.2f} s  cpu {r['cpu_s']:.2f} s",
              flush=True)
    import ctranslate2
    import torch

    atomic_write_text(a.output, json.dumps({
        "command": " ".join(["python", "benchmarks/ctranslate2_openmp.py"] + (argv if argv is not None else sys.argv[1:])),
        "ctranslate2": ctranslate2.__version__, "torch": torch.__version__, "threads": a.threads,
        "batch_size": a.batch_size, "model": a.model, "source": a.source, "results": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
