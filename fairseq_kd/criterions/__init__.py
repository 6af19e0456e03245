from . import word_kd  # noqa: F401
