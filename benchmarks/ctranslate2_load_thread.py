"""A float32 CTranslate2 model's decoding speed after an int8 model was loaded, decoded one batch and was deleted,
by the thread the int8 Translator was built in (ctranslate2_engine.translator builds every Translator in a thread of
its own):

    python benchmarks/ctranslate2_load_thread.py FLOAT32_DIR INT8_DIR SOURCE_FILE

Each case in a fresh process, greedy, length-sorted batches of 64, intra_threads 2, after one untimed batch:
none (no int8 model), int8_deleted (built in the main thread), int8_thread (built in a short-lived thread).
Prints each case's target tokens/s.
"""
import subprocess
import sys

CASE = r"""
import sys, time, threading, ctranslate2
mode, float32, int8, source = sys.argv[1:5]
lines = [l.split() for l in open(source, encoding="utf-8")]
order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
batches = [[lines[j] for j in order[i:i + 64]] for i in range(0, len(order), 64)]
def make(path):
    return ctranslate2.Translator(path, device="cpu", inter_threads=1, intra_threads=2)
def make_in_thread(path):
    box = []
    t = threading.Thread(target=lambda: box.append(make(path)))
    t.start()
    t.join()
    return box[0]
if mode != "none":
    other = (make_in_thread if mode == "int8_thread" else make)(int8)
    other.translate_batch(batches[0], beam_size=1)
    del other
a = make(float32)
a.translate_batch(batches[0], beam_size=1)
start, n = time.perf_counter(), 0
for batch in batches:
    for r in a.translate_batch(batch, beam_size=1, max_decoding_length=256):
        n += len(r.hypotheses[0])
print(mode, round(n / (time.perf_counter() - start)), "tokens/s")
"""

if __name__ == "__main__":
    for mode in ("none", "int8_deleted", "int8_thread"):
        print(subprocess.run([sys.executable, "-c", CASE, mode, *sys.argv[1:4]], capture_output=True, text=True,
                             check=True).stdout.strip(), flush=True)
