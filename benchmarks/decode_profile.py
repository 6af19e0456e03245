"""Where greedy decoding spends its time: torch.profiler over fairseq's SequenceGenerator, per model file.

    python benchmarks/decode_profile.py work/multi30k_en_de/bin --path work/multi30k_en_de/models/pruned_0.8.pt \\
        --path work/multi30k_en_de/models/pruned_0.8_sparse_int8.pt --output docs/results/decode_profile.json

Decodes the test subset greedily (--batch-size sentences per batch, one untimed pass first) under the
profiler and splits the pass's wall time into the model (fairseq's own "EnsembleModel: forward_encoder"
and "forward_decoder" ranges, inclusive: encoder, decoder step, output projection, log-softmax) and the
rest, which is fairseq's search (top-k, masking, finalizing hypotheses, reordering the incremental
state), its Python and batching. Int8 compression can only shrink the model's share. The operators with
the most self time are kept too. Writes JSON and prints the split.
"""
import argparse
import json
import os
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from fairseq_kd import inference

HERE = os.path.dirname(os.path.abspath(__file__))

MODEL_RANGES = ("EnsembleModel: forward_encoder", "EnsembleModel: forward_decoder")


def profile_file(cfg, task, dataset, path, batch_size):
    models, _ = inference.load_ensemble(cfg, task, [path])
    generator = inference.build_generator(task, models, cfg, 1)
    batches = inference.length_sorted_batches(dataset, None, batch_size=batch_size)

    def run():
        with torch.inference_mode():
            for ids in batches:
                task.inference_step(generator, models, inference.collate(dataset, ids, False))

    run()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    model = sum(e.cpu_time_total for e in events if e.key in MODEL_RANGES) / 1e6
    ops = sorted((e for e in events if e.key not in MODEL_RANGES), key=lambda e: -e.self_cpu_time_total)[:12]
    return {"path": os.path.abspath(path), "wall_s": wall, "model_s": model, "model_share": model / wall,
            "rest_share": 1 - model / wall,
            "top_ops": [{"op": e.key, "self_share": e.self_cpu_time_total / 1e6 / wall} for e in ops]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("--path", action="append", required=True)
    p.add_argument("--gen-subset", default="test")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    cfg = inference.generation_cfg([a.data, "--user-dir", os.path.join(os.path.dirname(HERE), "fairseq_kd"),
                                    "--path", a.path[0], "--gen-subset", a.gen_subset, "--cpu",
                                    "--max-len-a", "1.2", "--max-len-b", "10"])
    task = inference.setup(cfg)
    dataset = inference.load_subset(task, cfg, a.gen_subset)
    rows = [profile_file(cfg, task, dataset, path, a.batch_size) for path in a.path]
    report = {"command": " ".join(sys.argv), "batch_size": a.batch_size, "threads": a.threads,
              "subset": a.gen_subset, "torch": torch.__version__, "results": rows}
    with open(a.output, "w") as f:
        json.dump(report, f, indent=2)
    for r in rows:
        print(f"{os.path.basename(r['path'])}: {r['wall_s']:.2f} s profiled; model {r['model_share']:.0%}, "
              f"search and the rest {r['rest_share']:.0%}")

if __name__ == "__main__":
    main()
