"""fairseq-kd-distill against fairseq-generate: the same teacher, subset, beam and batching; generation
tokens/s as each tool reports it (time inside the search only), and whole-command wall time.

    python benchmarks/distill_speed.py --work demo_work --subset valid --beam 5 --output docs/results/distill_speed.json
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(ROOT, "fairseq_kd")
BIN = os.path.dirname(sys.executable)


def timed(cmd):
    print("+", " ".join(map(str, cmd)), flush=True)
    start = time.time()
    proc = subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)
    return proc.stdout + proc.stderr, round(time.time() - start, 2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(ROOT, "demo_work"))
    p.add_argument("--subset", default="valid")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max-tokens", type=int, default=8000)
    p.add_argument("--output", required=True)
    args = p.parse_args()
    work = os.path.abspath(args.work)
    bin_dir, teacher = os.path.join(work, "bin"), os.path.join(work, "teacher", "checkpoint_best.pt")
    common = [bin_dir, "--user-dir", USER_DIR, "--path", teacher, "--gen-subset", args.subset, "--beam", args.beam,
              "--max-tokens", args.max_tokens, "--cpu"]
    out, gen_wall = timed([os.path.join(BIN, "fairseq-generate"), *common])
    m = re.search(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s \(([\d.]+) sentences/s, ([\d.]+) tokens/s\)", out)
    generate = {"sentences": int(m.group(1).replace(",", "")), "tokens": int(m.group(2).replace(",", "")),
                "search_s": float(m.group(3)), "tokens_per_s": float(m.group(5)), "wall_s": gen_wall}
    dest = tempfile.mkdtemp(prefix="distill_speed_")
    try:
        out, dist_wall = timed([os.path.join(BIN, "fairseq-kd-distill"), *common, "--destdir", dest])
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    m = re.search(r"generated (\d+) tokens in ([\d.]+)s \(([\d.]+) tokens/s\)", out)
    distill = {"tokens": int(m.group(1)), "search_s": float(m.group(2)), "tokens_per_s": float(m.group(3)), "wall_s": dist_wall}
    result = {"subset": args.subset, "beam": args.beam, "max_tokens": args.max_tokens, "fairseq_generate": generate,
              "fairseq_kd_distill": distill,
              "speed_ratio_search": round(distill["tokens_per_s"] / generate["tokens_per_s"], 3),
              "speed_ratio_wall": round(gen_wall / dist_wall, 3)}
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
