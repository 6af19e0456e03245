"""fairseq's prefetch thread is stopped before the interpreter exits (fairseq_kd/exit_threads.py)."""
import sys

from fairseq_kd.exit_threads import stop_prefetch_threads

from helpers import run

# A BufferedIterator read for one batch and left, as fairseq-train leaves its train iterator at --max-update,
# over batches that each spend time in a GIL-releasing torch op: without the fix the process aborts at exit
# (benchmarks/exit_abort_stress.py counts how often).
LEFT_PREFETCHING = """
import sys, torch
from fairseq.data.iterators import BufferedIterator
if sys.argv[1] == "plugin":
    import fairseq_kd
m = torch.randn(400, 400)
class Batches:
    def __len__(self): return 1000
    def __iter__(self): return (m @ m for _ in range(1000))
next(iter(BufferedIterator(2, Batches())))
print("work done")
"""


def test_stop_joins_a_consumer_blocked_on_a_full_queue():
    import torch
    from fairseq.data.iterators import BufferedIterator

    it = BufferedIterator(2, [torch.zeros(3) for _ in range(50)])
    next(it)
    consumer = it._consumer
    assert consumer.is_alive()
    assert stop_prefetch_threads(timeout=10) == 0
    assert not consumer.is_alive()


def test_process_left_prefetching_exits_cleanly():
    proc = run([sys.executable, "-c", LEFT_PREFETCHING, "plugin"])
    assert proc.returncode == 0 and "work done" in proc.stdout
    assert "terminate called" not in proc.stderr
