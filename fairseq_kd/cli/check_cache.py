"""fairseq-kd-check-cache: is a cache of teacher outputs still its teacher's?

    fairseq-kd-check-cache CACHE [CACHE ...] [--allow-stale-cache]

CACHE is a top-k cache (fairseq-kd-dump-topk --destdir, read from its meta.json) or a Seq-KD corpus
(fairseq-kd-distill --destdir, from its provenance.json). Each records the identity of the teacher
checkpoints that made it (fairseq_kd.provenance); a teacher whose weights have changed since is an error
(exit status 1, one line), or a warning with --allow-stale-cache. A teacher file that is gone is a warning.
The recipes run this before they skip a stage whose cache is already there.
"""
import argparse
import json
import os

from ..errors import FairseqKDError
from ..provenance import check_fresh

RECORDS = (("meta.json", "top-k cache"), ("provenance.json", "Seq-KD corpus"))


def recorded_teachers(cache: str):
    """(what the cache is, its recorded teacher identities)."""
    for name, what in RECORDS:
        path = os.path.join(cache, name)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    record = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise FairseqKDError(f"{path} could not be read ({e})") from None
            return what, record.get("teachers")
    raise FairseqKDError(f"{cache} is not a finished top-k cache or Seq-KD corpus (no meta.json or provenance.json)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="fairseq-kd-check-cache", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cache", nargs="+")
    p.add_argument("--allow-stale-cache", action="store_true", help="warn about a changed teacher instead of failing")
    args = p.parse_args(argv)
    for cache in args.cache:
        what, teachers = recorded_teachers(cache)
        check_fresh(teachers, f"{what} {cache}", args.allow_stale_cache)
        print(f"{cache}: {what} made by {', '.join(t['path'] for t in teachers)}, checked")


if __name__ == "__main__":
    main()
