"""multi30k without ../shared: recipes/multi30k_en_de/fetch.py from a local file:// mirror the test makes itself
(no network in tests), checked by sha256; the recipe fetches it by itself when DATA is unset and no copy is there."""
import gzip
import hashlib
import subprocess
import sys

import pytest

from helpers import ROOT, SHARED_DATA as SHARED, clean_env

SHARED_DATA = SHARED / "multi30k"

FETCH = ROOT / "recipes" / "multi30k_en_de" / "fetch.py"
RELEASE_NAMES = {"train": "train", "val": "val", "test2016": "test_2016_flickr"}
pytestmark = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"the mirror is made from {SHARED_DATA}")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The release's .gz files, made from the project's decompressed copy."""
    d = tmp_path_factory.mktemp("mirror")
    for local, remote in RELEASE_NAMES.items():
        for lang in ("en", "de"):
            with gzip.open(d / f"{remote}.{lang}.gz", "wb") as f:
                f.write((SHARED_DATA / f"{local}.{lang}").read_bytes())
    return d


def fetch(dest, mirror_url):
    return subprocess.run([sys.executable, str(FETCH), str(dest), "--mirror", mirror_url], capture_output=True,
                          text=True, env=clean_env(), timeout=120)


def test_fetch_from_a_mirror_checks_and_caches(mirror, tmp_path):
    dest = tmp_path / "multi30k"
    proc = fetch(dest, mirror.as_uri())
    assert proc.returncode == 0, proc.stderr
    assert "downloaded train.en, train.de, val.en, val.de, test2016.en, test2016.de" in proc.stdout
    for local in RELEASE_NAMES:
        for lang in ("en", "de"):
            assert (dest / f"{local}.{lang}").read_bytes() == (SHARED_DATA / f"{local}.{lang}").read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.{l}" for n in RELEASE_NAMES for l in ("en", "de"))
    # a second run downloads nothing (the mirror may even be gone)
    proc = fetch(dest, (tmp_path / "gone").as_uri())
    assert proc.returncode == 0 and "every file present, checksums match" in proc.stdout


def test_checksum_mismatch_keeps_nothing(mirror, tmp_path):
    bad = tmp_path / "bad_mirror"
    bad.mkdir()
    for f in mirror.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    with gzip.open(bad / "val.de.gz", "wb") as f:
        f.write(b"Ein Hund.\n")
    dest = tmp_path / "multi30k"
    proc = fetch(dest, bad.as_uri())
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "val.de.gz decompresses to sha256" in lines[0]
    assert hashlib.sha256(b"Ein Hund.\n").hexdigest() in lines[0] and "nothing was kept" in lines[0]
    assert not (dest / "val.de").exists() and not list(dest.glob(".val.de.*"))  # no half-written or wrong file
    assert (dest / "val.en").exists()  # the files before it were right and stay


def test_offline_says_what_to_download_and_where(tmp_path):
    dest = tmp_path / "multi30k"
    proc = fetch(dest, (tmp_path / "no_such_mirror").as_uri())
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1
    assert lines[0].startswith("error: cannot download multi30k: ") and "train.en.gz" in lines[0]
    assert "https://github.com/multi30k/dataset/tree/master/data/task1/raw" in lines[0]
    assert f"into {dest}, or set DATA= to a directory that has them" in lines[0]
    assert "test_2016_flickr.de.gz as test2016.de" in lines[0]
    assert not list(dest.iterdir())
    (tmp_path / "a_file").write_text("x")
    proc = fetch(tmp_path / "a_file", (tmp_path / "no_such_mirror").as_uri())
    assert proc.returncode == 1 and "is a file, not a directory" in proc.stderr


def test_recipe_fetches_when_no_copy_is_there(mirror, tmp_path):
    """DATA unset and no project copy: the recipe fetches into its work directory, then prepares from there."""
    env = clean_env()
    env.update({"WORK": str(tmp_path / "w"), "THREADS": "1", "SMOKE": "1", "STOP_AFTER": "prepare",
                "MULTI30K_SHARED": str(tmp_path / "absent"), "MULTI30K_MIRROR": mirror.as_uri()})
    env.pop("DATA", None)
    proc = subprocess.run(["bash", str(ROOT / "recipes/multi30k_en_de/run.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"multi30k in {tmp_path / 'w' / 'data' / 'multi30k'}: downloaded" in proc.stderr
    assert (tmp_path / "w" / "raw" / "test.de").read_text().splitlines() == \
        (SHARED_DATA / "test2016.de").read_text().splitlines()[:60]
    # offline and no copy: one line, no stage run
    env.update({"WORK": str(tmp_path / "w2"), "MULTI30K_MIRROR": (tmp_path / "offline").as_uri()})
    proc = subprocess.run(["bash", str(ROOT / "recipes/multi30k_en_de/run.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and "cannot download multi30k" in errors[0]
    assert not (tmp_path / "w2" / ".done").exists()
