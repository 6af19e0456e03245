from . import block_kd, word_kd  # noqa: F401
