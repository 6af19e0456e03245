"""One clear line for a bad input, instead of a traceback through fairseq's internals.

Every check in fairseq_kd raises `FairseqKDError` (or a subclass) with a message that names the bad
input and what is expected. When such an error ends a command (fairseq-train, fairseq-generate, or one
of our tools), the hook below prints `fairseq_kd: error: <message>` (the exit status stays 1, as for any
uncaught exception). fairseq's own "Cannot load model parameters from checkpoint X" (fairseq-train
--restore-file/--finetune-from-model with a checkpoint of another architecture or dictionary) also
ends in one line, naming the first weight that does not fit. Every other exception keeps Python's
normal traceback.
"""
import sys


class FairseqKDError(ValueError):
    pass


FAIRSEQ_LOAD_ERROR = "Cannot load model parameters from checkpoint"


def state_dict_detail(exc) -> str:
    """The line of torch's load_state_dict error that names the weight, e.g. "size mismatch for
    encoder.embed_tokens.weight: ..." (its first line only says "Error(s) in loading state_dict")."""
    lines = str(exc or "").splitlines()
    details = [line.strip() for line in lines[1:] if line.strip()]
    return details[0] if details else str(exc or "").strip()


def explain_load_error(exc: BaseException):
    """One line for fairseq's trainer error on a checkpoint that does not fit the model, else None.
    The trainer hides torch's message in the exception's context."""
    if not str(exc).startswith(FAIRSEQ_LOAD_ERROR):
        return None
    detail = state_dict_detail(exc.__cause__ or exc.__context__)
    checkpoint = str(exc)[len(FAIRSEQ_LOAD_ERROR):].split(";")[0].strip()
    return (f"checkpoint {checkpoint} does not fit the model being trained: another architecture or dictionary"
            + (f" ({detail})" if detail else ""))


def _excepthook(exc_type, exc, tb, _previous=sys.excepthook):
    message = str(exc) if isinstance(exc, FairseqKDError) else explain_load_error(exc)
    if message is not None:
        sys.stderr.write(f"fairseq_kd: error: {message}\n")
        return
    _previous(exc_type, exc, tb)


def install_excepthook():
    if sys.excepthook is not _excepthook:
        sys.excepthook = _excepthook
