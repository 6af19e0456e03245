"""CTranslate2's native library, and with it its own OpenMP runtime, loaded before torch's (when both are installed).

The torch and ctranslate2 wheels each bundle a libgomp. When torch's is loaded first and torch's thread pool has run
(any parallel op), a ctranslate2.Translator with intra_threads > 1 in the same process decodes several times slower:
on this project's 2 cores a 4+4-layer 128-dim transformer went from 6,503 to 1,215 target tokens/s (greedy, 1,014
sentences, batches of 150), its threads waiting (0.78 CPU seconds per wall second); with torch imported but idle, or
ctranslate2 loaded first, it keeps its speed (6,510 with torch's pool active; docs/results/ctranslate2_openmp/
openmp.json). Every fairseq-kd-*
command imports fairseq_kd first, so importing this module first in fairseq_kd/__init__.py is enough; a process that
loaded torch before (fairseq-train --user-dir, a notebook) is recorded in LOADED_AFTER_TORCH, and the CTranslate2
engine warns once when it decodes with more than one thread there.
"""
import sys

LOADED_AFTER_TORCH = "torch" in sys.modules
if not LOADED_AFTER_TORCH:
    try:
        import ctranslate2  # noqa: F401
    except ImportError:  # optional: the CTranslate2 engine says how to install it when asked for
        pass
