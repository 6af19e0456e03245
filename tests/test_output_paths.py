"""Every tool checks its output paths before any work: a directory option naming a file, a file option naming a
directory, each one clear line, and nothing written. In-process: the tools' main() with their command lines
(the one-line form of a FairseqKDError at the command line is tested with every tool elsewhere)."""
import json

import pytest

from fairseq_kd.cli import compress, distill, dump_topk, prune, score, speed, table
from fairseq_kd.errors import FairseqKDError

from helpers import USER_DIR


def refused(main, argv, message):
    with pytest.raises(FairseqKDError) as error:
        main([str(a) for a in argv])
    assert str(error.value) == message


@pytest.fixture()
def blockers(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me\n")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    return a_file, a_dir


def test_directory_outputs_that_are_files(tiny_data, tiny_teacher, blockers):
    a_file, _ = blockers
    gen = [tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--cpu", "--gen-subset", "valid"]
    for main in (distill.main, dump_topk.main):
        refused(main, [*gen, "--destdir", a_file], f"--destdir: {a_file} is a file, not a directory")
    refused(compress.main, [tiny_teacher, tiny_teacher.parent / "checkpoint_best.pt", "--strip", "--output", a_file],
            f"--output: {a_file} is a file, not a directory")
    refused(speed.main, [*gen, "--output", a_file.parent / "o.json", "--hyp-dir", a_file],
            f"--hyp-dir: {a_file} is a file, not a directory")
    assert a_file.read_text() == "keep me\n"


def test_file_outputs_that_are_directories(tiny_data, tiny_teacher, blockers, tmp_path):
    _, a_dir = blockers
    ref = tmp_path / "ref.txt"
    ref.write_text("a b\n")
    speed_json = tmp_path / "speed.json"
    speed_json.write_text(json.dumps({"data": {}, "environment": {}, "results": []}))
    cases = [
        (prune.main, [tiny_teacher, "--prune-ratio", "0.5", "--output", a_dir], "--output"),
        (compress.main, [tiny_teacher, "--sparse", "--output", a_dir], "--output"),
        (compress.main, [tiny_teacher, "--strip", "--output", a_dir], "--output"),
        (speed.main, [tiny_data, "--user-dir", USER_DIR, "--path", tiny_teacher, "--output", a_dir], "--output"),
        (score.main, [ref, "--text", "--ref", ref, "--json", a_dir], "--json"),
        (table.main, [speed_json, "--output-md", a_dir], "--output-md"),
        (table.main, [speed_json, "--output-md", tmp_path / "t.md", "--output-png", a_dir], "--output-png"),
    ]
    for main, argv, option in cases:
        refused(main, argv, f"{option}: {a_dir} is a directory, not a file")
    assert list(a_dir.iterdir()) == [] and not (tmp_path / "t.md").exists()
