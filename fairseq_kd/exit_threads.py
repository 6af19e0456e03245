"""Stop fairseq's prefetch threads before the interpreter finalizes, so a finished run cannot abort at exit.

fairseq's BufferedIterator (fairseq/data/iterators.py) fills a queue of batches from a daemon thread,
BackgroundConsumer. A run that stops early (--max-update, a tool that reads only part of an epoch) leaves
that thread alive. Python then finalizes with the thread still running: when it returns from a torch
operator that had released the GIL, it can no longer take the GIL and calls pthread_exit, whose forced
unwind through torch's noexcept C++ frames ends in std::terminate ("terminate called without an active
exception", exit status -6; pytorch/pytorch#38228). The run's work is done and saved, but the process
aborts, more often on a loaded machine.

An atexit handler runs before finalization, while Python and torch still work: it tells every live
consumer to stop after its current batch, drains its queue so a blocked put returns, and joins it.
benchmarks/exit_abort_stress.py measures the abort counts with and without it.
"""
import atexit
import logging
import queue
import threading
import time

logger = logging.getLogger(__name__)

JOIN_SECONDS = 30.0  # a consumer finishes its current batch first: one collate, or one DataLoader batch


def _drain(q):
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def stop_prefetch_threads(timeout=JOIN_SECONDS):
    """Stop and join every live fairseq BackgroundConsumer; returns how many were still alive after `timeout`."""
    from fairseq.data.iterators import BackgroundConsumer

    consumers = [t for t in threading.enumerate() if isinstance(t, BackgroundConsumer) and t.is_alive()]
    deadline = time.monotonic() + timeout
    for consumer in consumers:
        consumer._max_len = 0  # its loop breaks after the next put (count >= max_len), then puts a sentinel
        while consumer.is_alive() and time.monotonic() < deadline:
            _drain(consumer._queue)  # unblocks a put on a full queue
            consumer.join(0.01)
    alive = sum(t.is_alive() for t in consumers)
    if alive:
        logger.warning("%d fairseq prefetch thread(s) still running at exit", alive)
    return alive


def install_exit_handler():
    atexit.register(stop_prefetch_threads)
