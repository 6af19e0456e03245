"""fairseq_kd: a fairseq plugin for knowledge distillation, pruning and compression of NMT models.

`fairseq-train --user-dir fairseq_kd ...` imports this package, which registers the models,
criterions and tasks below, lets torch >= 2.6 load fairseq checkpoints (see checkpoint_compat) and lets
fairseq's loader read the files of fairseq-kd-compress (see compression) and stops fairseq's prefetch
threads before the interpreter exits (see exit_threads).
"""
from . import openmp_first  # noqa: F401  (first, before anything imports torch: see its docstring)
from .checkpoint_compat import allow_fairseq_checkpoint_globals
from .errors import FairseqKDError, install_excepthook  # noqa: F401
from .exit_threads import install_exit_handler

allow_fairseq_checkpoint_globals()
install_excepthook()
install_exit_handler()

from . import criterions, models, tasks  # noqa: E402,F401  (registration side effects)
from .compression import install_fairseq_loader  # noqa: E402

install_fairseq_loader()

__version__ = "0.1.0"
