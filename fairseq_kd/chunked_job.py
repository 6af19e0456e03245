"""Resumable work over a subset: the sample ids are cut into fixed chunks, each chunk's result is
written to its own file under a temporary name and renamed when complete, so an interrupted run
(Ctrl-C, kill, power loss) restarts at the first missing chunk and never duplicates or drops an item.

`job.json` pins what the chunks belong to (subset, size, chunk size, settings); a restart with other
settings is refused instead of mixing outputs. Shards (`--shard-id/--num-shards`) take every
num_shards-th chunk, so shards of one job write disjoint chunk files into the same layout and a
merge only has to check that every chunk is there.
"""
import json
import os
from typing import Dict, Iterator, List, Tuple

import torch

from .errors import FairseqKDError
from .outputs import atomic_path, atomic_write_text


class ChunkedJob:
    def __init__(self, workdir: str, n_items: int, chunk_size: int, settings: Dict):
        if chunk_size < 1:
            raise FairseqKDError(f"--chunk-size must be >= 1, got {chunk_size}")
        self.workdir = workdir
        self.n_items = n_items
        self.chunk_size = chunk_size
        self.settings = dict(settings, n_items=n_items, chunk_size=chunk_size)
        os.makedirs(workdir, exist_ok=True)
        self._pin()

    @property
    def n_chunks(self) -> int:
        return (self.n_items + self.chunk_size - 1) // self.chunk_size

    def _pin(self):
        path = os.path.join(self.workdir, "job.json")
        if os.path.exists(path):
            with open(path) as f:
                previous = json.load(f)
            if previous != self.settings:
                diff = {k: (previous.get(k), self.settings.get(k)) for k in set(previous) | set(self.settings)
                        if previous.get(k) != self.settings.get(k)}
                raise FairseqKDError(f"{self.workdir} holds a run with other settings {diff} (before, now): "
                                     f"use another output directory or delete it to start over")
            return
        atomic_write_text(path, json.dumps(self.settings, indent=1, sort_keys=True))

    def chunk_path(self, c: int) -> str:
        return os.path.join(self.workdir, f"chunk-{c:06d}.pt")

    def chunk_ids(self, c: int) -> List[int]:
        return list(range(c * self.chunk_size, min((c + 1) * self.chunk_size, self.n_items)))

    def done(self, c: int) -> bool:
        return os.path.exists(self.chunk_path(c))

    def pending(self, shard_id: int = 0, num_shards: int = 1) -> Iterator[int]:
        if not 0 <= shard_id < num_shards:
            raise FairseqKDError(f"--shard-id must be in [0, --num-shards), got {shard_id} of {num_shards}")
        for c in range(shard_id, self.n_chunks, num_shards):
            if not self.done(c):
                yield c

    def n_done_items(self) -> int:
        return sum(len(self.chunk_ids(c)) for c in range(self.n_chunks) if self.done(c))

    def write(self, c: int, payload):
        with atomic_path(self.chunk_path(c)) as tmp:
            torch.save(payload, tmp)

    def read(self, c: int):
        return torch.load(self.chunk_path(c), map_location="cpu", weights_only=True)

    def check_complete(self) -> None:
        missing = [c for c in range(self.n_chunks) if not self.done(c)]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise FairseqKDError(f"{self.workdir} is incomplete: {len(missing)} of {self.n_chunks} chunks missing "
                                 f"({shown}); rerun (every shard) to finish them")

    def items(self) -> Iterator[Tuple[int, object]]:
        """(sample id, result) for every item, in id order; only when complete."""
        self.check_complete()
        for c in range(self.n_chunks):
            chunk = self.read(c)
            for sid in self.chunk_ids(c):
                yield sid, chunk[sid]
