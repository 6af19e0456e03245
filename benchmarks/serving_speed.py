"""The serving engines measured: fairseq against the fast kd_lstm decoder and CTranslate2, on one data set, with the
issue's targets, the compute roof, and a profile of what the fast decoder spends its time on.

    python benchmarks/serving_speed.py --data WORK/bin --ref WORK/raw/test.ref.de \\
        --teacher WORK/teacher/checkpoint_best.pt --student WORK/student_lstm_nll/checkpoint_best.pt \\
        --transformer TF/checkpoint_best.pt --work bench_work --output docs/results/serving_speed

Stages (each skipped when its output exists in --work, so an interrupted run continues):
  models    the student's int8 file (fairseq-kd-compress --int8), the transformer's CTranslate2 exports
            (fairseq-kd-export, float32 and int8)
  batched   fairseq-kd-speed --interleave over every model, --engine fairseq auto, beam 1 and 5, batch 64,
            the whole test subset
  batch1    the same at batch size 1 on the first --batch1-sentences sentences
  distill   Seq-KD corpus generation of --distill-subset with the teacher at beam 5: fairseq-generate, then
            fairseq-kd-distill --engine fairseq and --engine auto (the teacher's fastest: the fast decoder for a
            kd_lstm, CTranslate2 for a transformer; generation tokens/s as each reports it)
  roof      matmul GFLOP/s measured on this machine (the student's output-projection shape and a 1024^3 product),
            FLOPs per target token of each kd_lstm model, and the share of the roof the fast decoder reaches
  profile   torch.profiler over the fast decoder at batch 64 (student greedy, its int8 file, and a kd_lstm teacher
            at beam 5): top operators
The teacher may be a kd_lstm (the fast decoder's rows) or a transformer (CTranslate2's), as the multi30k recipe's is.
Writes OUTPUT.json (every measurement, the commands) and OUTPUT.md (tables and targets).
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(ROOT, "fairseq_kd")
BIN = os.path.dirname(sys.executable)


def tool(name):
    return os.path.join(BIN, name)


def run(cmd, log=None):
    cmd = [str(c) for c in cmd]
    print("+", " ".join(cmd), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if log:
        with open(log, "w") as f:
            f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr, time.time() - start


def is_kd_lstm_file(path):
    """Whether a checkpoint holds a kd_lstm (the fast decoder's models), from its weights' names."""
    import torch

    import fairseq_kd  # noqa: F401  (torch's allow-list for fairseq checkpoints)

    return "decoder.lstm.weight_ih_l0" in torch.load(path, map_location="cpu", weights_only=True)["model"]


def models_stage(a, w):
    student_int8 = os.path.join(w, "student_int8.pt")
    if not os.path.exists(student_int8):
        run([tool("fairseq-kd-compress"), a.student, "--int8", "--output", student_int8])
    exports = {}
    for q in ("float32", "int8"):
        out = os.path.join(w, f"transformer_ct2_{q}")
        if not os.path.exists(out):
            run([tool("fairseq-kd-export"), a.transformer, "--data", a.data, "--format", "ctranslate2",
                 "--quantization", q, "--output", out])
        exports[q] = out
    return [("teacher", a.teacher), ("student", a.student), ("student_int8", student_int8),
            ("transformer", a.transformer), ("transformer_ct2_float32", exports["float32"]),
            ("transformer_ct2_int8", exports["int8"])]


def speed_stage(a, w, models, name, batch_size, extra):
    out = os.path.join(w, f"speed_{name}.json")
    cmd = [tool("fairseq-kd-speed"), a.data, "--user-dir", USER_DIR, "--gen-subset", "test", "--threads", a.threads,
           "--beam", "1", "5", "--batch-size", batch_size, "--engine", "fairseq", "auto", "--interleave",
           "--ref", a.ref, "--post-process", "sentencepiece", "--max-len-a", "1.2", "--max-len-b", "10",
           "--hyp-dir", os.path.join(w, "hyps"), "--output", out, *extra]
    for label, path in models:
        cmd += ["--path", path, "--name", label]
    if not os.path.exists(out):
        run(cmd, os.path.join(w, f"speed_{name}.log"))
    with open(out) as f:
        report = json.load(f)
    report["command"] = " ".join(str(c) for c in cmd)
    return report


def agreement(report):
    """Per model and beam: the fast / CTranslate2 rows' hypotheses against fairseq's (identical lines, BLEU)."""
    rows = {(r["model"], r["engine"], r["beam"]): r for r in report["results"]}
    out = []
    for (model, engine, beam), r in rows.items():
        base_model = {"transformer_ct2_float32": "transformer", "transformer_ct2_int8": "transformer",
                      "student_int8": "student_int8"}.get(model, model)
        base = rows.get((base_model, "fairseq", beam))
        if engine == "fairseq" or base is None:
            continue
        ours, theirs = (open(x["hypotheses"], encoding="utf-8").read().splitlines() for x in (r, base))
        same = sum(x == y for x, y in zip(ours, theirs))
        out.append({"model": model, "engine": engine, "beam": beam, "against": f"{base_model} (fairseq)",
                    "identical": same, "sentences": len(ours), "bleu": r["bleu"], "bleu_fairseq": base["bleu"],
                    "bleu_delta": round(r["bleu"] - base["bleu"], 2)})
    return out


def distill_stage(a, w):
    out = os.path.join(w, "distill.json")
    if os.path.exists(out):
        with open(out) as f:
            return json.load(f)
    common = [a.data, "--user-dir", USER_DIR, "--path", a.teacher, "--gen-subset", a.distill_subset, "--beam", "5",
              "--max-tokens", "4000", "--max-len-a", "1.2", "--max-len-b", "10"]
    env_threads = ["--threads", a.threads]
    text, wall = run([tool("fairseq-generate"), *common, "--cpu"])
    m = re.search(r"Translated ([\d,]+) sentences \(([\d,]+) tokens\) in ([\d.]+)s \(([\d.]+) sentences/s, "
                  r"([\d.]+) tokens/s\)", text)
    result = {"subset": a.distill_subset, "beam": 5, "max_tokens": 4000,
              "fairseq_generate": {"tokens": int(m.group(2).replace(",", "")), "search_s": float(m.group(3)),
                                   "tokens_per_s": float(m.group(5)), "wall_s": round(wall, 1),
                                   "command": " ".join(map(str, [tool("fairseq-generate"), *common, "--cpu"]))}}
    corpora = {}
    for engine in ("fairseq", "auto"):  # auto: the teacher's fastest engine
        dest = os.path.join(w, f"distill_{engine}")
        cmd = [tool("fairseq-kd-distill"), *common, *env_threads, "--destdir", dest, "--engine", engine]
        text, wall = run(cmd)
        m = re.search(r"generated (\d+) tokens in ([\d.]+)s \(([\d.]+) tokens/s\)", text)
        if m is None:  # a rerun found every chunk done: no generation to time
            sys.exit(f"{dest} was already distilled: remove it to time the generation again")
        used = re.search(r"decoding with engine (\w+)", text)
        result[f"distill_{engine}"] = {"engine": used.group(1) if used else engine, "tokens": int(m.group(1)),
                                       "search_s": float(m.group(2)), "tokens_per_s": float(m.group(3)),
                                       "wall_s": round(wall, 1), "command": " ".join(map(str, cmd))}
        with open(os.path.join(dest, f"{a.distill_subset}.de"), encoding="utf-8") as f:
            corpora[engine] = f.read().splitlines()
    result["identical_lines"] = sum(x == y for x, y in zip(corpora["fairseq"], corpora["auto"]))
    result["lines"] = len(corpora["fairseq"])
    result["fastest_vs_generate"] = round(result["distill_auto"]["tokens_per_s"] / result["fairseq_generate"]["tokens_per_s"], 2)
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    return result


def kd_lstm_flops(path):
    """Multiply-adds x 2 per target token of a kd_lstm decoder step (at an average source length), from its
    weights: embedding lookup free; LSTM 4H(in + H) per layer; attention W_a, two S x C products, W_c; output layer."""
    import torch

    import fairseq_kd  # noqa: F401

    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    macs = 0
    layer = 0
    while f"decoder.lstm.weight_ih_l{layer}" in state:
        macs += state[f"decoder.lstm.weight_ih_l{layer}"].numel() + state[f"decoder.lstm.weight_hh_l{layer}"].numel()
        layer += 1
    a_w = state["decoder.attention.score_proj.weight"]
    c_w = state["decoder.attention.output_proj.weight"]
    source_dim = a_w.size(0)
    avg_source = 16  # multi30k test2016: about 16 subword tokens per source sentence (6k pieces)
    macs += a_w.numel() + 2 * avg_source * source_dim + c_w.numel()
    if "decoder.out_proj.weight" in state:
        macs += state["decoder.out_proj.weight"].numel()
    macs += state["decoder.output_projection.weight"].numel()
    return {"flops_per_token": 2 * macs, "output_layer_share": state["decoder.output_projection.weight"].numel() / macs}


def matmul_gflops(threads, m, k, n, repeats=200):
    import torch

    torch.set_num_threads(threads)
    x, w = torch.randn(m, k), torch.randn(n, k)
    for _ in range(10):
        torch.nn.functional.linear(x, w)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.nn.functional.linear(x, w)
    return 2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9


def roof_stage(a, batched):
    import torch

    import fairseq_kd  # noqa: F401  (torch's allow-list for fairseq checkpoints)

    vocab = torch.load(a.student, map_location="cpu", weights_only=True)["model"]["decoder.output_projection.weight"].shape
    threads = int(a.threads)
    measured = {"output_projection_batch64": round(matmul_gflops(threads, 64, vocab[1], vocab[0]), 1),
                "output_projection_batch1": round(matmul_gflops(threads, 1, vocab[1], vocab[0], 2000), 1),
                "square_1024": round(matmul_gflops(threads, 1024, 1024, 1024, 20), 1)}
    out = {"gflops_measured": measured, "threads": threads, "models": {}}
    rows = {(r["model"], r["engine"], r["beam"]): r for r in batched["results"]}
    for name, path in (("teacher", a.teacher), ("student", a.student)):
        if not is_kd_lstm_file(path):  # the roof is the fast kd_lstm decoder's
            continue
        f = kd_lstm_flops(path)
        entry = dict(f)
        for engine in ("fairseq", "fast"):
            r = rows.get((name, engine, 1))
            if r:
                tps = r["tokens_per_s"]["median"]
                entry[engine] = {"tokens_per_s": round(tps), "gflops_achieved": round(f["flops_per_token"] * tps / 1e9, 2),
                                 "roof_share_batch64_shape": round(f["flops_per_token"] * tps / 1e9
                                                                   / measured["output_projection_batch64"], 3)}
        entry["roof_tokens_per_s"] = round(measured["output_projection_batch64"] * 1e9 / f["flops_per_token"])
        out["models"][name] = entry
    return out


def profile_stage(a, w):
    """Where the fast decoder spends its time at batch 64 (one pass over the test set, after a warm-up): the student
    greedy, its int8 file greedy, and a kd_lstm teacher at beam 5 (the Seq-KD generation's search)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from fairseq_kd import inference
    from fairseq_kd.serving import engines

    torch.set_num_threads(int(a.threads))
    cfg = inference.generation_cfg([a.data, "--user-dir", USER_DIR, "--path", a.student, "--gen-subset", "test",
                                    "--max-len-a", "1.2", "--max-len-b", "10"])
    task = inference.setup(cfg)
    dataset = inference.load_subset(task, cfg, "test")
    result = {}
    runs = [("student greedy", a.student, 1), ("student_int8 greedy", os.path.join(w, "student_int8.pt"), 1)]
    if is_kd_lstm_file(a.teacher):
        runs.append(("teacher beam 5", a.teacher, 5))
    for label, path, beam in runs:
        loaded = engines.load(path, cfg, task, "fast")
        gen = engines.build_generator(loaded, task, cfg, beam)
        samples = [inference.collate(dataset, ids, False)
                   for ids in inference.length_sorted_batches(dataset, None, batch_size=64)]
        for s in samples:
            task.inference_step(gen, loaded.models, s)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for s in samples:
                task.inference_step(gen, loaded.models, s)
            wall = time.perf_counter() - start
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        result[label] = {"wall_s": round(wall, 3), "top_ops": [
            {"op": e.key, "self_share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in events[:10]]}
    return result


def fmt_rows(report):
    lines = ["| model | engine | beam | words/s | BLEU |", "|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['model']} | {r['engine']} | {r['beam']} | {r['words_per_s']['median']:.0f} | {r['bleu']:.2f} |")
    return lines


def targets(batched, batch1, agree, agree1, distill):
    def wps(report, model, engine, beam):
        for r in report["results"]:
            if (r["model"], r["engine"], r["beam"]) == (model, engine, beam):
                return r["words_per_s"]["median"]
        return None

    def bleu(model, engine, beam):
        for r in batched["results"]:
            if (r["model"], r["engine"], r["beam"]) == (model, engine, beam):
                return r["bleu"]
        return None

    out = []
    for label, report, goal, rows in (("batch 64", batched, 3.0, agree), ("batch 1", batch1, 4.0, agree1)):
        f, s = wps(report, "student", "fairseq", 1), wps(report, "student", "fast", 1)
        same = next(x for x in rows if (x["model"], x["engine"], x["beam"]) == ("student", "fast", 1))
        out.append({"target": f"fast decoder >= {goal:g}x fairseq, student greedy, {label}, identical output",
                    "measured": f"{s:.0f} vs {f:.0f} words/s ({s / f:.2f}x); identical {same['identical']}/{same['sentences']} ({label} rows)",
                    "met": s >= goal * f and same["identical"] == same["sentences"]})
    # the student's fastest engine: int8 allowed if it loses at most 0.3 BLEU
    candidates = [("student", "fast"), ("student", "fairseq")]
    if bleu("student_int8", "fast", 1) is not None and bleu("student_int8", "fast", 1) >= bleu("student", "fast", 1) - 0.3:
        candidates.append(("student_int8", "fast"))
    for label, report, goal in (("batched", batched, 20.0), ("batch 1", batch1, 10.0)):
        best = max(candidates, key=lambda c: wps(report, *c, 1) or 0)
        s, t = wps(report, *best, 1), wps(report, "teacher", "fairseq", 5)
        out.append({"target": f"student greedy (fastest engine) >= {goal:g}x teacher beam 5 in fairseq, {label}",
                    "measured": f"{best[0]} ({best[1]}) {s:.0f} vs {t:.0f} words/s ({s / t:.1f}x)", "met": s >= goal * t})
    for q, (limit, share) in (("float32", (0.2, 0.99)), ("int8", (0.3, None))):
        x = next((x for x in agree if x["model"] == f"transformer_ct2_{q}" and x["beam"] == 1), None)
        if x:
            ok = abs(x["bleu_delta"]) <= limit and (share is None or x["identical"] >= share * x["sentences"])
            out.append({"target": f"CTranslate2 {q} greedy: BLEU within {limit}" + (f", >= {share:.0%} identical" if share else ""),
                        "measured": f"{x['bleu']:.2f} vs {x['bleu_fairseq']:.2f} ({x['bleu_delta']:+.2f}); identical "
                                    f"{x['identical']}/{x['sentences']}", "met": ok})
    if distill:
        g, fast = distill["fairseq_generate"]["tokens_per_s"], distill["distill_auto"]["tokens_per_s"]
        out.append({"target": f"Seq-KD generation (distill --engine auto: {distill['distill_auto']['engine']}) >= 3x "
                              "fairseq-generate tokens/s, beam 5",
                    "measured": f"{fast:.0f} vs {g:.0f} tokens/s ({fast / g:.2f}x); identical corpus lines "
                                f"{distill['identical_lines']}/{distill['lines']}", "met": fast >= 3 * g})
    return out


def markdown(result):
    b, b1 = result["batched"], result["batch1"]
    md = [f"# Serving engines on CPU ({b['environment']['threads']} threads, {b['environment']['cpu']})", "",
          f"Command: `{result['command']}`", "",
          f"Data: {b['data']['subset']} ({b['data']['sentences']} sentences batched, {b1['data']['sentences']} at batch 1), "
          f"sacreBLEU `{next(r['bleu_signature'] for r in b['results'])}`. Each table is one interleaved "
          f"fairseq-kd-speed run ({b['data']['repeats']} timed passes, median).", "", "## Targets", "",
          "| target | measured | met |", "|---|---|---|"]
    md += [f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |" for t in result["targets"]]
    md += ["", "## Batch 64 (whole test set)", "", f"`{b['command']}`", ""] + fmt_rows(b)
    md += ["", f"## Batch 1 (first {b1['data']['sentences']} sentences)", "", f"`{b1['command']}`", ""] + fmt_rows(b1)
    for title, rows in (("batch 64", result["agreement"]), ("batch 1", result["agreement_batch1"])):
        md += ["", f"## Output agreement with fairseq ({title} rows)", "",
               "| model | engine | beam | identical sentences | BLEU | fairseq BLEU | Δ |", "|---|---|---|---|---|---|---|"]
        md += [f"| {x['model']} | {x['engine']} | {x['beam']} | {x['identical']}/{x['sentences']} | {x['bleu']:.2f} "
               f"| {x['bleu_fairseq']:.2f} | {x['bleu_delta']:+.2f} |" for x in rows]
    d = result.get("distill")
    if d:
        md += ["", f"## Seq-KD corpus generation (teacher, beam 5, {d['subset']}, {d['lines']} sentences)", "",
               "| tool | tokens/s (search) | wall s |", "|---|---|---|"]
        for key in ("fairseq_generate", "distill_fairseq", "distill_auto"):
            label = f"distill --engine auto ({d[key]['engine']})" if key == "distill_auto" else key
            md.append(f"| {label} | {d[key]['tokens_per_s']:.0f} | {d[key]['wall_s']} |")
    r = result["roof"]
    md += ["", "## Compute roof", "", f"Matmul GFLOP/s measured here ({r['threads']} threads): "
           + ", ".join(f"{k} {v}" for k, v in r["gflops_measured"].items()) + ".", "",
           "| model | FLOPs/token | output layer share | engine | tokens/s (greedy, batch 64) | GFLOP/s achieved | share of roof | roof tokens/s |",
           "|---|---|---|---|---|---|---|---|"]
    for name, m in r["models"].items():
        for engine in ("fairseq", "fast"):
            if engine in m:
                e = m[engine]
                md.append(f"| {name} | {m['flops_per_token'] / 1e6:.2f}M | {m['output_layer_share']:.2f} | {engine} "
                          f"| {e['tokens_per_s']} | {e['gflops_achieved']} | {e['roof_share_batch64_shape']:.2f} "
                          f"| {m['roof_tokens_per_s']} |")
    md += ["", "The roof is the measured GFLOP/s of the output projection's own matmul shape (batch 64): a decoder "
           "doing only its arithmetic at that rate would reach `roof tokens/s`.", "", "## Profile: the fast decoder at batch 64", ""]
    for label, p in result["profile"].items():
        md.append(f"- {label} ({p['wall_s']} s): " + ", ".join(f"{o['op']} {o['self_share']:.0%}" for o in p["top_ops"][:6]))
    return "\n".join(md) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--transformer", required=True)
    p.add_argument("--threads", default="2")
    p.add_argument("--batch1-sentences", default="300")
    p.add_argument("--batched-sentences", default=None, help="batch 64 on the first N sentences (default: all)")
    p.add_argument("--repeats", default="3")
    p.add_argument("--distill-subset", default="valid")
    p.add_argument("--work", required=True)
    p.add_argument("--output", required=True, help="OUTPUT.json and OUTPUT.md are written")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", a.threads)
    w = os.path.abspath(a.work)
    models = models_stage(a, w)
    batched = speed_stage(a, w, models, "batched", "64", ["--repeats", a.repeats, "--warmup", "1"]
                          + (["--max-sentences", a.batched_sentences] if a.batched_sentences else []))
    batch1 = speed_stage(a, w, models, "batch1", "1", ["--repeats", a.repeats, "--warmup", "5", "--max-sentences",
                                                        a.batch1_sentences])
    agree, agree1 = agreement(batched), agreement(batch1)
    distill = distill_stage(a, w)
    result = {"command": "python " + " ".join(sys.argv), "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
              "batched": batched, "batch1": batch1, "agreement": agree, "agreement_batch1": agree1, "distill": distill,
              "roof": roof_stage(a, batched), "profile": profile_stage(a, w)}
    result["targets"] = targets(batched, batch1, agree, agree1, distill)
    with open(a.output + ".json", "w") as f:
        json.dump(result, f, indent=2)
    with open(a.output + ".md", "w") as f:
        f.write(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
