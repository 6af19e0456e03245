"""fairseq-kd-dump-topk: run the teacher once over a subset and store its top-k predictions per target token.

    fairseq-kd-dump-topk DATA --user-dir fairseq_kd --path TEACHER[:TEACHER2] --gen-subset train \\
        --topk 8 --destdir CACHE [--cache-dtype float16] [--max-tokens 4000] [--threads 2]

Teacher forcing on the gold target; an ensemble stores log of its mean probability. Resumable: the
subset is processed in chunks written atomically to CACHE/work/, a rerun continues at the first missing
chunk, and the final files (see fairseq_kd.teacher_topk_cache) appear only when every chunk is done.
Train with `--criterion word_kd --teacher-topk-path CACHE`.
"""
import argparse
import os

import numpy as np
import torch
from tqdm import tqdm

from .. import inference
from ..chunked_job import ChunkedJob
from ..errors import FairseqKDError
from ..outputs import output_dir
from ..provenance import weights_only
from ..losses import ensemble_topk_log_probs
from ..teacher import Teacher
from ..teacher_topk_cache import dictionary_hash, sizes_hash, write_cache


def own_options():
    p = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    p.add_argument("--topk", type=int, default=8)
    p.add_argument("--destdir", required=True)
    p.add_argument("--cache-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--chunk-size", type=int, default=2000, help="sentences per resumable chunk")
    p.add_argument("--threads", type=int, default=None)
    return p


def topk_batch(teacher, sample, k):
    """(ids B x T x k, log-probs B x T x k) of the teacher under teacher forcing."""
    return ensemble_topk_log_probs(teacher.logits(sample["net_input"]), k)


def main(argv=None):
    parsed = inference.tool_options(argv, own_options(), __doc__)
    if parsed is None:
        return
    opts, rest = parsed
    output_dir(opts.destdir, "--destdir")
    cfg = inference.generation_cfg(rest)
    task = inference.setup(cfg)
    vocab = len(task.target_dictionary)
    if not 1 <= opts.topk <= vocab:
        raise FairseqKDError(f"--topk must be in [1, {vocab}] (the target vocabulary), got {opts.topk}")
    subset = cfg.dataset.gen_subset
    dataset = inference.load_subset(task, cfg, subset)
    teacher = Teacher.load(cfg.common_eval.path, task, identify=True)  # checks files and dictionaries
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    inference.prepare_for_inference(teacher.models, cfg)
    meta = {"subset": subset, "n_sentences": len(dataset), "target_sizes_hash": sizes_hash(dataset.tgt_sizes),
            "dict_hash": dictionary_hash(task.target_dictionary), "dict_size": vocab,
            "teachers": teacher.identities, "value_dtype": opts.cache_dtype, "values": "log-probabilities at T=1"}
    # the chunks belong to these weights: a teacher retrained in place refuses the resume
    job = ChunkedJob(os.path.join(opts.destdir, "work"), len(dataset), opts.chunk_size,
                     dict(meta, teachers=weights_only(teacher.identities), k=opts.topk))
    value_dtype = torch.float16 if opts.cache_dtype == "float16" else torch.float32
    pad = task.target_dictionary.pad()
    max_tokens = cfg.dataset.max_tokens or (None if cfg.dataset.batch_size else 4000)

    bar = tqdm(total=len(dataset), initial=job.n_done_items(), unit="sent", desc="top-k", dynamic_ncols=True)
    with torch.no_grad():
        for c in job.pending():
            result = {}
            for batch_ids in inference.length_sorted_batches(dataset, job.chunk_ids(c), cfg.dataset.batch_size, max_tokens):
                sample = inference.collate(dataset, batch_ids, use_cuda)
                ids, values = topk_batch(teacher, sample, opts.topk)
                lengths = sample["target"].ne(pad).sum(dim=1).tolist()
                for b, sid in enumerate(sample["id"].tolist()):
                    result[sid] = (ids[b, :lengths[b]].int().cpu(), values[b, :lengths[b]].to(value_dtype).cpu())
                bar.update(len(batch_ids))
            job.write(c, result)
    bar.close()
    n_rows = int(np.asarray(dataset.tgt_sizes, dtype=np.int64).sum())
    write_cache(opts.destdir, job.items(), n_rows, opts.topk, meta, np.dtype(opts.cache_dtype))
    size = sum(os.path.getsize(os.path.join(opts.destdir, f)) for f in ("ids.npy", "values.npy", "offsets.npy"))
    print(f"wrote {opts.destdir}: {len(dataset)} sentences, {n_rows} target tokens, k={opts.topk}, "
          f"{size} bytes ({size / n_rows:.1f} bytes per target token)")


if __name__ == "__main__":
    main()
