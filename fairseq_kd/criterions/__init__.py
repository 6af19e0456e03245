from . import block_kd, seq_inter, word_kd  # noqa: F401
