"""Fetch multi30k task 1 En-De (train, val, test2016) from its public release, checked by sha256.

    python recipes/multi30k_en_de/fetch.py DEST [--mirror URL]

Downloads train / val / test_2016_flickr .en and .de (gzip) from the multi30k/dataset repository
(`data/task1/raw/`), decompresses them into DEST as train.{en,de}, val.{en,de}, test2016.{en,de} and checks each
decompressed file's sha256 against the release the recipes were measured on. Files already in DEST with the right
checksum are kept (a second run downloads nothing); a file with another checksum is never kept under its final
name. --mirror (or MULTI30K_MIRROR) replaces the base URL, e.g. file:///data/multi30k-mirror for a local copy of
the same .gz files. Offline, or when a download fails, it says in one line what to download and where to put it.
"""
import argparse
import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request

RELEASE = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
BROWSE = "https://github.com/multi30k/dataset/tree/master/data/task1/raw"
# local name: (file in the release, sha256 of the decompressed text)
FILES = {
    "train.en": ("train.en.gz", "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6"),
    "train.de": ("train.de.gz", "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72"),
    "val.en": ("val.en.gz", "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227"),
    "val.de": ("val.de.gz", "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660"),
    "test2016.en": ("test_2016_flickr.en.gz", "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182"),
    "test2016.de": ("test_2016_flickr.de.gz", "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16"),
}


class FetchError(Exception):
    pass


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manual_steps(dest):
    names = ", ".join(f"{remote} as {local}" for local, (remote, _) in FILES.items())
    return (f"download {names} from {BROWSE}, decompress them (gunzip) into {dest}, or set DATA= to a directory "
            "that has them")


def fetch_one(base, local, remote, expected, dest):
    target = os.path.join(dest, local)
    if os.path.isfile(target) and sha256(target) == expected:
        return False
    url = f"{base.rstrip('/')}/{remote}"
    fd, tmp = tempfile.mkstemp(prefix=f".{local}.", dir=dest)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response, gzip.GzipFile(fileobj=response) as text:
                    for block in iter(lambda: text.read(1 << 20), b""):
                        out.write(block)
            except (urllib.error.URLError, OSError, EOFError) as e:
                reason = getattr(e, "reason", None) or e
                raise FetchError(f"cannot download multi30k: {url} ({reason}); {manual_steps(dest)}") from None
        got = sha256(tmp)
        if got != expected:
            raise FetchError(f"{url} decompresses to sha256 {got}, not the multi30k release the recipes were measured "
                             f"on ({expected}); nothing was kept. {manual_steps(dest)}")
        os.replace(tmp, target)
        return True
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fetch(dest, base):
    if os.path.exists(dest) and not os.path.isdir(dest):
        raise FetchError(f"{dest} is a file, not a directory")
    os.makedirs(dest, exist_ok=True)
    fetched = [local for local, (remote, expected) in FILES.items() if fetch_one(base, local, remote, expected, dest)]
    print(f"multi30k in {dest}: " + (f"downloaded {', '.join(fetched)} from {base}" if fetched
                                     else "every file present, checksums match"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest")
    p.add_argument("--mirror", default=os.environ.get("MULTI30K_MIRROR") or RELEASE)
    a = p.parse_args(argv)
    try:
        fetch(a.dest, a.mirror)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
