"""Shared fixtures: a tiny synthetic translation task, binarized with fairseq-preprocess, and a
tiny teacher trained on it. Everything runs through the real command-line tools in subprocesses,
with the virtualenv's bin/ first on PATH and no special environment variables.

Under pytest-xdist (`make test` runs `-n 2 --dist loadgroup`) every test module is one group, so its module
fixtures are built once, on one worker; a test with its own group (the recipes' smoke runs) keeps it. The
session fixtures (tiny data, tiny teacher) are built once for all workers, in the run's shared base directory
under a file lock, and only read after that. In-process torch runs on one thread per worker, as the tools run
in subprocesses (OMP_NUM_THREADS=1): two workers' OpenMP pools spinning on two cores slow small ops many times."""
from pathlib import Path

import pytest
from filelock import FileLock

from helpers import make_corpus, preprocess, train


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # the slow groups (minutes each) first: xdist hands out groups in this order, so the long ones start at once on
    # both workers and the short ones fill in after, instead of one long run starting last on an otherwise idle core
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory, worker_id):
    """A directory every xdist worker of this run sees (the base temp directory without the worker's part)."""
    base = tmp_path_factory.getbasetemp()
    return base if worker_id == "master" else base.parent


def built_once(path: Path, build):
    """`build(path)` by the first worker that gets here; the others wait for it and reuse the result."""
    with FileLock(str(path) + ".lock"):
        if not (path / ".built").exists():
            path.mkdir(parents=True, exist_ok=True)
            build(path)
            (path / ".built").touch()
    return path


@pytest.fixture(scope="session")
def tiny_data(shared_dir):
    root = built_once(shared_dir / "tiny", lambda root: preprocess(make_corpus(root / "raw"), root / "bin"))
    return root / "bin"


@pytest.fixture(scope="session")
def tiny_teacher(tiny_data, shared_dir):
    def build(save):
        train(tiny_data, save, "--arch", "kd_lstm_1x32", "--encoder-embed-dim", "48", "--dropout", "0",
              "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1", epochs=20)
    return built_once(shared_dir / "teacher", build) / "checkpoint_last.pt"


@pytest.fixture(scope="session")
def tiny_task(tiny_data):
    """An in-process fairseq translation task over the tiny data (for building criterions)."""
    import fairseq_kd  # noqa: F401
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(tiny_data), "--task", "translation", "-s", "src", "-t", "tgt",
                                                "--arch", "kd_lstm_1x32"])
    return tasks.setup_task(convert_namespace_to_omegaconf(args).task)
