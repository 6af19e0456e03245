"""fairseq-kd-export: a fairseq transformer checkpoint as a CTranslate2 model directory, through CTranslate2's own
converter (FairseqConverter), for serving.

    fairseq-kd-export CKPT --data DATA --format ctranslate2 [--quantization float32|int8|int8_float32] \\
        --output DIR [--force]

DATA is the binarized data directory whose dictionaries the model was trained with (dict.SRC.txt, dict.TGT.txt);
the languages are the checkpoint's (or --source-lang / --target-lang). DIR is written whole or not at all; it
holds CTranslate2's model.bin and vocabularies, and fairseq_kd_export.json (the checkpoint's identity, path, size,
mtime and weights hash, the data, the quantization). It decodes with `ctranslate2.Translator(DIR)`,
`fairseq-kd-translate --model DIR` and `fairseq-kd-speed --path DIR`.

kd_lstm models are RNNs, which CTranslate2 does not have: they are served by the fast decoder
(`fairseq-kd-translate --engine fast`). A transformer CTranslate2 refuses (different head counts in the encoder
and decoder, say) gets the converter's reasons.
"""
import argparse
import os
import shutil
import sys

from ..errors import FairseqKDError
from ..serving import ctranslate2_engine


def parser():
    p = argparse.ArgumentParser(prog="fairseq-kd-export", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("checkpoint", help="fairseq checkpoint (.pt) of a transformer")
    p.add_argument("--data", required=True, help="data directory with the model's dictionaries")
    p.add_argument("--format", default="ctranslate2", choices=["ctranslate2"], help="export format")
    p.add_argument("--quantization", default="float32", choices=list(ctranslate2_engine.QUANTIZATIONS),
                   help="weights of the exported model (default float32; measure int8 before choosing it)")
    p.add_argument("--source-lang", default=None)
    p.add_argument("--target-lang", default=None)
    p.add_argument("--output", required=True, help="the directory to write")
    p.add_argument("--force", action="store_true", help="replace --output if it is an earlier export")
    return p


def main(argv=None):
    opts = parser().parse_args(sys.argv[1:] if argv is None else argv)

    if not os.path.isdir(opts.data):  # its dictionaries: ctranslate2_engine.check_dictionaries
        raise FairseqKDError(f"--data {opts.data} is not a directory")
    if os.path.exists(opts.output):
        if not os.path.isdir(opts.output):
            raise FairseqKDError(f"--output: {opts.output} is a file, not a directory")
        if not opts.force:
            raise FairseqKDError(f"--output {opts.output} exists: remove it, or replace it with --force")
        if not ctranslate2_engine.is_exported(opts.output):
            raise FairseqKDError(f"--output {opts.output} is not an earlier export: --force replaces exports only")
    staging = opts.output.rstrip("/") + ".new"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    info = ctranslate2_engine.export(opts.checkpoint, opts.data, staging, opts.quantization, opts.source_lang,
                                     opts.target_lang)
    if os.path.exists(opts.output):
        shutil.rmtree(opts.output)
    os.replace(staging, opts.output)
    print(f"wrote {opts.output} ({info['source_lang']}->{info['target_lang']}, {opts.quantization}, "
          f"{os.path.getsize(os.path.join(opts.output, 'model.bin')) / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
