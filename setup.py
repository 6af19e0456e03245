"""fairseq_kd: knowledge distillation, pruning and compression for fairseq NMT models."""
from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "fairseq-kd-spm = fairseq_kd.cli.spm:main",
    "fairseq-kd-score = fairseq_kd.cli.score:main",
    "fairseq-kd-speed = fairseq_kd.cli.speed:main",
    "fairseq-kd-dump-topk = fairseq_kd.cli.dump_topk:main",
    "fairseq-kd-distill = fairseq_kd.cli.distill:main",
    "fairseq-kd-check-cache = fairseq_kd.cli.check_cache:main",
    "fairseq-kd-prune = fairseq_kd.cli.prune:main",
    "fairseq-kd-compress = fairseq_kd.cli.compress:main",
    "fairseq-kd-table = fairseq_kd.cli.table:main",
    "fairseq-kd-export = fairseq_kd.cli.export:main",
    "fairseq-kd-translate = fairseq_kd.cli.translate:main",
    "fairseq-kd-average = fairseq_kd.cli.average:main",
]

setup(
    name="fairseq_kd",
    version="0.1.0",
    description="Knowledge distillation (word/sequence/block KD), pruning and compression for fairseq NMT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.8",
    packages=find_packages(include=["fairseq_kd", "fairseq_kd.*"]),
    install_requires=[
        # torch is pinned to the CPU build that the machine ships; a range would pull a multi-GB CUDA build.
        'torch==2.13.0; python_version >= "3.11"',
        'torch>=1.13,<2.6; python_version < "3.11"',
        # official fairseq 0.12.2 does not build on Python 3.11: ve-fairseq is the same 0.12.3
        # source as a cp311 wheel (see README, "Set-up details").
        've-fairseq==0.12.3; python_version >= "3.11"',
        'scikit-learn==1.9.1; python_version >= "3.11"',
        'fairseq==0.12.2; python_version < "3.11"',
        "numpy",
        "sentencepiece==0.2.3",
        "sacremoses==0.2.0",
        "sacrebleu==2.6.0",
        "tqdm==4.70.1",
        "matplotlib==3.11.2; python_version >= '3.10'",
        "matplotlib; python_version < '3.10'",
        "ctranslate2==4.8.5",
    ],
    extras_require={"test": ["pytest==9.0.3", "pytest-xdist==3.8.0", "filelock==4.3.1"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
