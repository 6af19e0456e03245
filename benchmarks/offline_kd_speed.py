"""Training speed of plain NLL, online word_kd and offline word_kd (top-k cache) on the same data, model
and machine, in one run; and the size of the top-k cache for the whole multi30k training set.

    python benchmarks/offline_kd_speed.py --work demo_work --updates 300 --repeats 2 --output docs/results/offline_kd_speed.json

Needs a finished demo (`make demo`): its data (WORK/bin, WORK/spm.model) and teacher. Writes JSON and prints it.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
USER_DIR = os.path.join(ROOT, "fairseq_kd")
BIN = os.path.dirname(sys.executable)


def sh(*cmd, **kw):
    print("+", " ".join(map(str, cmd)), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def train_wps(data, arch, updates, extra):
    """fairseq's per-interval words/s of one run, without the first interval (warm-up), and the wall time."""
    start = time.time()
    proc = sh(os.path.join(BIN, "fairseq-train"), data, "--user-dir", USER_DIR, "--arch", arch, "--cpu",
              "--optimizer", "adam", "--lr", "0.003", "--max-tokens", "1000", "--max-update", updates, "--no-save",
              "--disable-validation", "--log-format", "simple", "--log-interval", "25", "--seed", "1", *extra)
    wps = [float(x) for x in re.findall(r"wps=([0-9.]+)", proc.stdout + proc.stderr)][1:]
    return wps, time.time() - start


def measure(configs, data, arch, updates, repeats):
    """Each configuration `repeats` times, in rotation (so a slow spell of the machine hits all of them);
    per configuration the median of all its logging intervals and the wall time of each run."""
    wps = {name: [] for name in configs}
    walls = {name: [] for name in configs}
    for _ in range(repeats):
        for name, extra in configs.items():
            w, wall = train_wps(data, arch, updates, extra)
            wps[name] += w
            walls[name].append(round(wall, 1))
    return {name: {"words_per_s": statistics.median(wps[name]), "min": min(wps[name]), "max": max(wps[name]),
                   "intervals": len(wps[name]), "updates": updates, "runs": repeats, "wall_s": walls[name]}
            for name in configs}


def cache_size(cache):
    meta = json.load(open(os.path.join(cache, "meta.json")))
    size = sum(os.path.getsize(os.path.join(cache, f)) for f in ("ids.npy", "values.npy", "offsets.npy"))
    return {"bytes": size, "target_tokens": meta["n_rows"], "sentences": meta["n_sentences"], "k": meta["k"],
            "bytes_per_target_token": round(size / meta["n_rows"], 2), "value_dtype": meta["value_dtype"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(ROOT, "demo_work"))
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "multi30k"))
    p.add_argument("--arch", default="kd_lstm_1x128")
    p.add_argument("--updates", type=int, default=150)
    p.add_argument("--repeats", type=int, default=1, help="runs of each configuration, in rotation")
    p.add_argument("--topk", type=int, default=8)
    p.add_argument("--output", required=True)
    args = p.parse_args()
    work, bin_dir = os.path.abspath(args.work), os.path.join(os.path.abspath(args.work), "bin")
    teacher = os.path.join(work, "teacher", "checkpoint_best.pt")
    cache = os.path.join(work, f"topk{args.topk}")
    if not os.path.exists(os.path.join(cache, "meta.json")):
        sh(os.path.join(BIN, "fairseq-kd-dump-topk"), bin_dir, "--user-dir", USER_DIR, "--path", teacher, "--cpu",
           "--gen-subset", "train", "--topk", args.topk, "--destdir", cache, "--max-tokens", "4000")
    kd = ["--kd-alpha", "0.5", "--label-smoothing", "0.1"]
    configs = {"plain_nll": ["--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"],
               "online_word_kd": ["--criterion", "word_kd", "--teacher-path", teacher, *kd],
               "offline_word_kd": ["--criterion", "word_kd", "--teacher-topk-path", cache, *kd]}
    result = {"machine": {"cpu_threads": os.cpu_count()}, "arch": args.arch,
              **measure(configs, bin_dir, args.arch, args.updates, args.repeats), "cache_demo_train": cache_size(cache)}
    plain = result["plain_nll"]["words_per_s"]
    result["offline_over_plain"] = round(result["offline_word_kd"]["words_per_s"] / plain, 3)
    result["online_over_plain"] = round(result["online_word_kd"]["words_per_s"] / plain, 3)

    # the whole multi30k training set, binarized with the demo's sentencepiece model and dictionaries
    full = os.path.join(work, "full_train")
    if not os.path.exists(os.path.join(full, "topk", "meta.json")):
        os.makedirs(full, exist_ok=True)
        spm = os.path.join(work, "spm.model")
        sh(os.path.join(BIN, "fairseq-kd-spm"), "encode", "--model", spm,
           "--inputs", *(os.path.join(args.data, f"train.{l}") for l in ("en", "de")),
           "--outputs", *(os.path.join(full, f"train.sp.{l}") for l in ("en", "de")))
        sh(os.path.join(BIN, "fairseq-preprocess"), "-s", "en", "-t", "de", "--trainpref", os.path.join(full, "train.sp"),
           "--srcdict", os.path.join(bin_dir, "dict.en.txt"), "--tgtdict", os.path.join(bin_dir, "dict.de.txt"),
           "--destdir", os.path.join(full, "bin"), "--workers", "2")
        sh(os.path.join(BIN, "fairseq-kd-dump-topk"), os.path.join(full, "bin"), "--user-dir", USER_DIR, "--path", teacher,
           "--cpu", "--gen-subset", "train", "--topk", args.topk, "--destdir", os.path.join(full, "topk"), "--max-tokens", "4000")
    result["cache_multi30k_train"] = cache_size(os.path.join(full, "topk"))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
