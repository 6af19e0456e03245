"""One clear line for a bad input, instead of a traceback through fairseq's internals.

Every check in fairseq_kd raises `FairseqKDError` (or a subclass) with a message that names the bad
input and what is expected. When such an error ends a command (fairseq-train, fairseq-generate, or one
of our tools), the hook below prints `fairseq_kd: error: <message>` (the exit status stays 1, as for any
uncaught exception); every other exception keeps Python's normal traceback.
"""
import sys


class FairseqKDError(ValueError):
    pass


def _excepthook(exc_type, exc, tb, _previous=sys.excepthook):
    if isinstance(exc, FairseqKDError):
        sys.stderr.write(f"fairseq_kd: error: {exc}\n")
        return
    _previous(exc_type, exc, tb)


def install_excepthook():
    if sys.excepthook is not _excepthook:
        sys.excepthook = _excepthook
