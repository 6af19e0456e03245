"""fairseq-kd-distill: Seq-KD data. Decode a subset with the teacher (beam K) and write the distilled corpus.

    fairseq-kd-distill DATA --user-dir fairseq_kd --path TEACHER[:TEACHER2] --gen-subset train \\
        --beam 5 --destdir OUT [--nbest 5 --select-closest --post-process sentencepiece] \\
        [--max-tokens 8000] [--threads 2] [--shard-id I --num-shards N] [--merge] [--engine fairseq|fast|ctranslate2]

Writes, aligned line for line with the subset (same order and count; an empty hypothesis is an empty
line, and counted):
    OUT/<subset>.<src>            source side, in the data's subword units
    OUT/<subset>.<tgt>            the teacher's best hypothesis (Seq-KD target)
    OUT/<subset>.nbest.<tgt>      with --nbest K > 1: `line-id <tab> rank <tab> score <tab> hypothesis`, K lines per source
                                  (score: fairseq's length-normalised log-probability, natural log)
    OUT/<subset>.selected.<tgt>   with --select-closest: the K-best hypothesis closest to the gold target by
                                  sentence BLEU (fairseq_kd.seq_inter_selection), for Seq-Inter
    OUT/bin/                      the data's dictionaries, <subset> binarized with them (distilled target, original
                                  source), every other split copied, and <subset>.selected.* when selected:
                                  `fairseq-train OUT/bin` trains on the distilled corpus directly.
    OUT/provenance.json           the identity of each teacher checkpoint (fairseq_kd.provenance): a recipe that finds
                                  the corpus done checks that its teacher has not changed since (fairseq-kd-check-cache)
A failed decode is not a training target: a best (or selected) hypothesis longer than
--degenerate-len-a x source length + --degenerate-len-b tokens (default 2 x source + 10; a teacher caught in a
repetition loop runs to fairseq's length limit) is replaced by the gold target in the Seq-KD and selected corpora
and counted (the n-best file keeps what the teacher wrote; without gold targets it is kept and counted).
--degenerate-len-a 0 turns this off. It is applied when the outputs are written, so `--merge` with other values
redoes it without decoding again.
--engine chooses the decoder (fairseq_kd.serving): fairseq's SequenceGenerator (default), `fast` (the lean kd_lstm
decoder: the same search, several times faster for small models) or `ctranslate2` (a transformer teacher, converted
for the run); `auto` is the fastest that supports the teacher. The engines run the same search (fairseq's length
rules, beam and normalisation), so a resumed job may continue with another one.
Resumable: chunks of --chunk-size sentences are written atomically to OUT/work; a rerun continues with the
first missing one. Shards (--shard-id/--num-shards, same OUT) split the chunks; `--merge` checks that every
chunk is there and writes the outputs (a single-shard run merges by itself).
"""
import argparse
import glob
import json
import os
import shutil
import time

import torch
from tqdm import tqdm

from fairseq.data import indexed_dataset

from .. import inference
from ..chunked_job import ChunkedJob
from ..errors import FairseqKDError
from ..outputs import atomic_write_lines, atomic_write_text, output_dir
from ..provenance import checkpoint_identity, weights_only
from ..seq_inter_selection import select_closest
from ..serving import engines
from ..teacher import Teacher


def own_options():
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--destdir", required=True)
    p.add_argument("--chunk-size", type=int, default=1000, help="sentences per resumable chunk")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--engine", default="fairseq", help="fairseq (default), fast, ctranslate2 or auto")
    p.add_argument("--shard-id", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--merge", action="store_true", help="only check completeness and write the outputs")
    p.add_argument("--select-closest", action="store_true", help="also write the Seq-Inter selected corpus")
    p.add_argument("--degenerate-len-a", type=float, default=2.0,
                   help="a hypothesis longer than A x source tokens + B is a failed decode, replaced by the gold "
                        "target (0: off)")
    p.add_argument("--degenerate-len-b", type=int, default=10)
    return p


def degenerate(hyp_tokens: int, src_tokens: int, a: float, b: int) -> bool:
    """A hypothesis too long for its source: a failed decode (repetition loop), not a training target."""
    return a > 0 and hyp_tokens > a * src_tokens + b


def check_search(cfg):
    beam, nbest = cfg.generation.beam, cfg.generation.nbest
    if beam < 1:
        raise FairseqKDError(f"--beam must be >= 1, got {beam}")
    if nbest < 1 or nbest > beam:
        raise FairseqKDError(f"--nbest must be in [1, --beam] = [1, {beam}], got {nbest}")


def decode_chunks(job, task, cfg, teacher, dataset, opts):
    loaded = engines.for_models(opts.engine, cfg.common_eval.path, teacher.models, cfg.task.data)
    generator = engines.build_generator(loaded, task, cfg, cfg.generation.beam, cfg.generation.nbest)
    print(f"decoding with engine {loaded.engine}", flush=True)
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    mine = [c for c in range(opts.shard_id, job.n_chunks, opts.num_shards)]
    total = sum(len(job.chunk_ids(c)) for c in mine)
    done = sum(len(job.chunk_ids(c)) for c in mine if job.done(c))
    bar = tqdm(total=total, initial=done, unit="sent", desc=f"distill shard {opts.shard_id}", dynamic_ncols=True)
    gen_seconds, gen_tokens = 0.0, 0
    max_tokens = cfg.dataset.max_tokens or (None if cfg.dataset.batch_size else 8000)
    for c in job.pending(opts.shard_id, opts.num_shards):
        result = {}
        for batch_ids in inference.length_sorted_batches(dataset, job.chunk_ids(c), cfg.dataset.batch_size, max_tokens):
            sample = inference.collate(dataset, batch_ids, use_cuda)
            start = time.perf_counter()
            hypos = task.inference_step(generator, loaded.models, sample)
            gen_seconds += time.perf_counter() - start
            for i, sid in enumerate(sample["id"].tolist()):
                nbest = hypos[i][: cfg.generation.nbest]
                gen_tokens += len(nbest[0]["tokens"])
                result[sid] = [(inference.ids_string(task.target_dictionary, h["tokens"]), float(h["score"]))
                               for h in nbest]
            bar.update(len(batch_ids))
        job.write(c, result)
    bar.close()
    if gen_seconds > 0:
        print(f"generated {gen_tokens} tokens in {gen_seconds:.1f}s ({gen_tokens / gen_seconds:.1f} tokens/s)")


def binarize(lines, dictionary, prefix):
    builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=len(dictionary))
    for line in lines:
        builder.add_item(dictionary.encode_line(line, add_if_not_exist=False, append_eos=True).long())
    builder.finalize(prefix + ".idx")


def merge(job, task, cfg, dataset, opts, teachers):
    job.check_complete()
    src, tgt = task.cfg.source_lang, task.cfg.target_lang
    subset, out = cfg.dataset.gen_subset, opts.destdir
    src_lines, best, nbest_lines, selected = [], [], [], []
    n_degenerate = {"best": 0, "selected": 0}
    detok = inference.detokenizer(cfg)

    def target(text, src_tokens, gold, corpus):
        if not degenerate(len(text.split()), src_tokens, opts.degenerate_len_a, opts.degenerate_len_b):
            return text
        n_degenerate[corpus] += 1
        return text if gold is None else gold

    for sid, hyps in job.items():
        src_lines.append(inference.ids_string(task.source_dictionary, dataset.src[sid]))
        src_tokens = len(dataset.src[sid]) - 1  # without </s>
        gold = None if dataset.tgt is None else inference.ids_string(task.target_dictionary, dataset.tgt[sid])
        best.append(target(hyps[0][0], src_tokens, gold, "best"))
        nbest_lines.extend(f"{sid}\t{rank}\t{score:.4f}\t{text}" for rank, (text, score) in enumerate(hyps))
        if opts.select_closest:
            if len(hyps) == 1:  # the closest of one (beam 1): no sentence BLEU to compute
                chosen = hyps[0][0]
            else:
                chosen = hyps[select_closest([(detok(t), s) for t, s in hyps], detok(gold))[0]][0]
            selected.append(target(chosen, src_tokens, gold, "selected"))
    atomic_write_lines(os.path.join(out, f"{subset}.{src}"), src_lines)
    atomic_write_lines(os.path.join(out, f"{subset}.{tgt}"), best)
    if cfg.generation.nbest > 1:
        atomic_write_lines(os.path.join(out, f"{subset}.nbest.{tgt}"), nbest_lines)
    if opts.select_closest:
        atomic_write_lines(os.path.join(out, f"{subset}.selected.{tgt}"), selected)

    data = cfg.task.data.split(":")[0]
    bin_dir = os.path.join(out, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    for path in glob.glob(os.path.join(data, "dict.*.txt")) + glob.glob(os.path.join(data, "*.bin")) + \
            glob.glob(os.path.join(data, "*.idx")):
        name = os.path.basename(path)
        if not name.startswith(f"{subset}.{src}-{tgt}.{tgt}."):  # everything but the target we replace
            shutil.copyfile(path, os.path.join(bin_dir, name))
    best_prefix = os.path.join(bin_dir, f"{subset}.{src}-{tgt}.{tgt}")
    binarize(best, task.target_dictionary, best_prefix)
    if opts.select_closest:
        selected_prefix = os.path.join(bin_dir, f"{subset}.selected.{src}-{tgt}.{tgt}")
        if selected == best:  # one hypothesis a sentence: the same corpus
            for ext in (".bin", ".idx"):
                shutil.copyfile(best_prefix + ext, selected_prefix + ext)
        else:
            binarize(selected, task.target_dictionary, selected_prefix)
    atomic_write_text(os.path.join(out, "provenance.json"), json.dumps(
        {"what": "Seq-KD corpus", "subset": subset, "teachers": teachers}, indent=1))
    empty = sum(1 for line in best if not line.strip())
    fate = "kept: the subset has no gold targets" if dataset.tgt is None else "replaced by the gold target"
    print(f"wrote {out}: {len(best)} sentences ({empty} empty hypotheses; {n_degenerate['best']} best"
          + (f" and {n_degenerate['selected']} selected" if opts.select_closest else "")
          + f" longer than {opts.degenerate_len_a:g} x source + {opts.degenerate_len_b} tokens, {fate}), "
          f"binarized in {bin_dir}")


def main(argv=None):
    parsed = inference.tool_options(argv, own_options(), __doc__)
    if parsed is None:
        return
    opts, rest = parsed
    if opts.num_shards < 1:
        raise FairseqKDError(f"--num-shards must be >= 1, got {opts.num_shards}")
    if opts.degenerate_len_a < 0:
        raise FairseqKDError(f"--degenerate-len-a must be >= 0 (0: off), got {opts.degenerate_len_a:g}")
    engines.check_engine(opts.engine)
    output_dir(opts.destdir, "--destdir")
    cfg = inference.generation_cfg(rest)
    check_search(cfg)
    task = inference.setup(cfg)
    dataset = inference.load_subset(task, cfg, cfg.dataset.gen_subset)
    if opts.select_closest and dataset.tgt is None:
        raise FairseqKDError(f"--select-closest needs the gold targets, and subset '{cfg.dataset.gen_subset}' has none")
    teacher = None
    if opts.merge:  # nothing to decode: the teachers' identities only, to check the chunks are theirs
        identities = [checkpoint_identity(p) for p in inference.checkpoint_paths(cfg)]
    else:
        teacher = Teacher.load(cfg.common_eval.path, task, identify=True)
        identities = teacher.identities
    g = cfg.generation
    # the chunks belong to these weights: a teacher retrained in place refuses the resume
    settings = {"data": os.path.abspath(cfg.task.data), "subset": cfg.dataset.gen_subset,
                "teachers": weights_only(identities), "beam": g.beam,
                "nbest": g.nbest, "lenpen": g.lenpen, "max_len_a": g.max_len_a, "max_len_b": g.max_len_b,
                "unnormalized": g.unnormalized, "sampling": g.sampling}
    job = ChunkedJob(os.path.join(opts.destdir, "work"), len(dataset), opts.chunk_size, settings)
    if teacher is not None:
        inference.prepare_for_inference(teacher.models, cfg)
        decode_chunks(job, task, cfg, teacher, dataset, opts)
    if opts.merge or opts.num_shards == 1:
        merge(job, task, cfg, dataset, opts, identities)
    else:
        print(f"shard {opts.shard_id} of {opts.num_shards} done; run with --merge once every shard has finished")


if __name__ == "__main__":
    main()
