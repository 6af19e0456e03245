"""Pruning + compression benchmark on multi30k (test2016, sacreBLEU), after the multi30k recipe:

    python benchmarks/compression.py --work work/multi30k_en_de --output docs/results/compression

For two model sizes, the 80%-pruned, retrained model as dense fp32 (optimizer state stripped), sparse, and
sparse+int8 (fairseq-kd-compress): file size, BLEU (greedy and beam 5, all of test2016), greedy decode words/s
at batch size 64 (all of test2016) and batch size 1 (the first --latency-sentences sentences), median of
--repeats timed passes (min-max kept in the JSON), taken round-robin over the six files
(fairseq-kd-speed --interleave) so that the machine's drift does not favour one of them:

  student   the recipe's pruned student (1x128; its 0/50/80/90% rows are in the recipe's results)
  2x256     the recipe's teacher architecture, pruned class-blind to --ratio here and retrained --epochs
            epochs with translation_prune (NLL on the gold data): the same compression where the matrix
            products are a larger part of each decoding step

Resumable: every file is written once (the retraining resumes from its checkpoint_last.pt). Writes
OUTPUT.json (every speed row, with fairseq-kd-speed's environment) and OUTPUT.md (the table).
"""
import argparse
import json
import os
import subprocess
import sys

from fairseq_kd.outputs import atomic_path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
USER_DIR = os.path.join(ROOT, "fairseq_kd")
BIN = os.path.dirname(sys.executable)
VARIANTS = ("dense_fp32", "sparse", "sparse_int8")


def sh(*cmd, log=None):
    print("+", " ".join(map(str, cmd)), flush=True)
    out = open(log, "a") if log else subprocess.PIPE
    try:
        subprocess.run([str(c) for c in cmd], check=True, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log:
            out.close()


def tool(name):
    return os.path.join(BIN, name)


def need(path, what):
    if not os.path.isfile(path):
        sys.exit(f"error: missing {path} ({what})")
    return path


def retrain_pruned(work, out, ratio, arch, epochs, lr):
    """The recipe's teacher pruned one-shot to `ratio`, retrained with its own objective: its best checkpoint."""
    teacher = need(os.path.join(work, "teacher", "checkpoint_best.pt"), "run the multi30k recipe first")
    oneshot = os.path.join(out, f"teacher_oneshot_{ratio}.pt")
    save = os.path.join(out, f"teacher_pruned_{ratio}")
    if not os.path.isfile(oneshot):
        sh(tool("fairseq-kd-prune"), teacher, "--prune-ratio", ratio, "--prune-scheme", "class-blind", "--output", oneshot)
    done = os.path.join(save, "done")
    if not os.path.isfile(done):
        sh(tool("fairseq-train"), os.path.join(work, "bin"), "--user-dir", USER_DIR, "--arch", arch, "--save-dir", save,
           "--task", "translation_prune", "--prune-ratio", ratio, "--prune-scheme", "class-blind",
           "--finetune-from-model", oneshot, "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
           "--optimizer", "adam", "--lr-scheduler", "reduce_lr_on_plateau", "--lr-shrink", "0.5", "--clip-norm", "5",
           "--lr", lr, "--max-tokens", "2000", "--max-epoch", epochs, "--no-epoch-checkpoints", "--no-progress-bar",
           "--log-interval", "100", "--seed", "1", log=os.path.join(out, f"teacher_pruned_{ratio}.log"))
        open(done, "w").close()
    return os.path.join(save, "checkpoint_best.pt")


def compressed_files(checkpoint, out, name):
    """{variant: path}: the checkpoint without optimizer state, sparse, sparse+int8."""
    files = {"dense_fp32": os.path.join(out, f"{name}.pt"), "sparse": os.path.join(out, f"{name}_sparse.pt"),
             "sparse_int8": os.path.join(out, f"{name}_sparse_int8.pt")}
    flags = {"dense_fp32": ["--strip"], "sparse": ["--sparse"], "sparse_int8": ["--sparse", "--int8"]}
    for variant, path in files.items():
        if not os.path.isfile(path):
            sh(tool("fairseq-kd-compress"), checkpoint, *flags[variant], "--output", path)
    return files


def speed(work, models, output, extra):
    if os.path.isfile(output):
        return json.load(open(output))
    with atomic_path(output) as tmp:
        cmd = [tool("fairseq-kd-speed"), os.path.join(work, "bin"), "--user-dir", USER_DIR, "--gen-subset", "test",
               "--cpu", "--ref", os.path.join(work, "raw", "test.ref.de"), "--post-process", "sentencepiece",
               "--max-len-a", "1.2", "--max-len-b", "10", "--output", tmp, *extra]
        for name, path in models.items():
            cmd += ["--path", path, "--name", name]
        sh(*cmd)
    return json.load(open(output))


def table(groups, batched, batch1, beam):
    rows = {(r["model"], r["beam"], r["batch_size"]): r for r in batched["results"] + batch1["results"]
            if r.get("engine", "fairseq") == "fairseq"}
    bs = max(r["batch_size"] for r in batched["results"])
    lines = ["| model | file | size (MB) | size vs dense | nonzero params | BLEU greedy | BLEU beam 5 | "
             "words/s batch 64 | speed-up | words/s batch 1 | speed-up | latency p50 (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for group in groups:
        dense64 = rows[(f"{group}_dense_fp32", 1, bs)]
        dense1 = rows[(f"{group}_dense_fp32", 1, 1)]
        for variant in VARIANTS:
            name = f"{group}_{variant}"
            g, b, one = rows[(name, 1, bs)], rows[(name, beam, bs)], rows[(name, 1, 1)]
            w64, w1 = g["words_per_s"], one["words_per_s"]
            summary[name] = {
                "file_size_bytes": g["file_size_bytes"], "size_vs_dense": g["file_size_bytes"] / dense64["file_size_bytes"],
                "bleu_greedy": g["bleu"], "bleu_beam": b["bleu"], "words_per_s_batched": w64,
                "speedup_batched": w64["median"] / dense64["words_per_s"]["median"], "words_per_s_batch1": w1,
                "speedup_batch1": w1["median"] / dense1["words_per_s"]["median"], "latency_ms_p50": one.get("latency_ms_p50")}
            s = summary[name]
            lines.append(
                f"| {group} | {variant} | {s['file_size_bytes'] / 1e6:.2f} | {s['size_vs_dense']:.3f}x | "
                f"{g['params_nonzero'] / 1e6:.2f}M of {g['params_total'] / 1e6:.2f}M | {g['bleu']:.2f} | {b['bleu']:.2f} | "
                f"{w64['median']:.0f} [{w64['min']:.0f}-{w64['max']:.0f}] | {s['speedup_batched']:.2f}x | "
                f"{w1['median']:.0f} [{w1['min']:.0f}-{w1['max']:.0f}] | {s['speedup_batch1']:.2f}x | "
                f"{s['latency_ms_p50']:.1f} |")
    return "\n".join(lines) + "\n", summary


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="the multi30k recipe's WORK (after its compress stage)")
    p.add_argument("--output", required=True, help="OUTPUT.json and OUTPUT.md are written")
    p.add_argument("--ratio", default="0.8")
    p.add_argument("--arch", default="kd_lstm_2x256", help="the recipe's teacher architecture")
    p.add_argument("--epochs", default="2", help="retraining epochs of the pruned 2x256 model")
    p.add_argument("--lr", default="0.0005")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latency-sentences", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    out = os.path.join(a.work, "compression_benchmark")
    os.makedirs(out, exist_ok=True)
    models = os.path.join(a.work, "models")
    student = {v: need(os.path.join(models, f"pruned_{a.ratio}{'' if v == 'dense_fp32' else '_' + v}.pt"),
                       "the multi30k recipe's compress stage writes it") for v in VARIANTS}
    big = compressed_files(retrain_pruned(a.work, out, a.ratio, a.arch, a.epochs, a.lr), out, f"teacher_pruned_{a.ratio}")
    groups = {"student": student, "2x256": big}
    named = {f"{g}_{v}": path for g, files in groups.items() for v, path in files.items()}
    common = ["--threads", str(a.threads), "--repeats", str(a.repeats), "--interleave"]
    batched = speed(a.work, named, os.path.join(out, "speed_batched.json"),
                    [*common, "--beam", "1", str(a.beam), "--batch-size", "64", "--warmup", "1"])
    batch1 = speed(a.work, named, os.path.join(out, "speed_batch1.json"),
                   [*common, "--beam", "1", "--batch-size", "1", "--max-sentences", str(a.latency_sentences),
                    "--warmup", "5"])
    md, summary = table(groups, batched, batch1, a.beam)
    env = batched["environment"]
    header = (f"# Pruning + compression: dense fp32 vs sparse vs sparse+int8 ({float(a.ratio):.0%} pruned, multi30k test2016)\n\n"
              f"`python benchmarks/compression.py --work {a.work} --output {a.output}`\n\n"
              f"{env['cpu']}, {env['threads']} threads; torch {env['torch']}. Greedy words/s: median of {a.repeats} "
              f"passes [min-max], taken round-robin over the files; batch 64 over all {batched['data']['sentences']} sentences, batch 1 over the first "
              f"{batch1['data']['sentences']}. Speed-up and size against the dense fp32 file of the same model. "
              f"BLEU: sacreBLEU `{next(r['bleu_signature'] for r in batched['results'] if 'bleu_signature' in r)}`.\n\n")
    os.makedirs(os.path.dirname(os.path.abspath(a.output)), exist_ok=True)
    with open(a.output + ".md", "w") as f:
        f.write(header + md)
    with open(a.output + ".json", "w") as f:
        json.dump({"command": f"python benchmarks/compression.py --work {a.work} --output {a.output}", "ratio": a.ratio,
                   "summary": summary, "batched": batched, "batch1": batch1}, f, indent=2)
    print(header + md)


if __name__ == "__main__":
    main()
