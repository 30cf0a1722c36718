"""Training samples streamed from WebDataset tar shards (data.stream): sequential reads, bounded memory.

Why shards are split, not samples: a rank or DataLoader worker that reads only its own tars reads each byte once
(a per-sample split would make every reader scan every tar). Each epoch the shard list is permuted (seed, epoch)
and dealt round-robin to the slots `rank * workers + worker`; within a slot a shuffle buffer of `buffer` encoded
samples mixes the order. Every rank yields the same number of full batches, so DDP never waits on a rank that ran
out: a slot that runs short re-reads its shards, one with more stops early (its other samples come first in
another epoch's permutation). With fewer shards than slots every slot reads all shards and keeps every
slots-th sample (small data only). docs/explanation/streaming.md has the trade-offs.
"""

from __future__ import annotations

import io
import itertools
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from torch.utils.data import IterableDataset, get_worker_info

from wildtrain.data.shards import INDEX
from wildtrain.errors import WildtrainError

BLOCK, ZERO_BLOCK = 512, bytes(512)
IMAGE_KEYS = ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp")


class ShardError(WildtrainError):
    """A shard that cannot be read. Raised in a DataLoader worker, it comes back to the main process rebuilt from
    the worker's whole traceback text: only the last line (the message) is kept, so the user sees one line."""

    def __init__(self, message: str):
        last = str(message).strip().splitlines()[-1] if str(message).strip() else str(message)
        super().__init__(last.split("ShardError: ", 1)[-1])


@dataclass(frozen=True)
class Shards:
    files: list[Path]
    counts: list[int]
    meta: dict

    @property
    def total(self) -> int:
        return sum(self.counts)


def read_index(folder: Path, hint: str) -> Shards:
    """The shards convert wrote into `folder` (index.json + tars); `hint` says how to make them."""
    index = Path(folder) / INDEX
    if not index.is_file():
        raise WildtrainError(f"{index}: no shard index; data.stream reads shards that convert writes ({hint})")
    try:
        meta = json.loads(index.read_text())
        files = [Path(folder) / s["file"] for s in meta["shards"]]
        counts = [int(s["samples"]) for s in meta["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise WildtrainError(f"{index}: not a shard index ({type(e).__name__}: {e}); rerun convert") from None
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise WildtrainError(f"{missing[0]}: shard listed in {index} is missing ({hint}, or dvc pull)")
    if not files or sum(counts) == 0:
        raise WildtrainError(f"{index}: no samples in the shards")
    return Shards(files, counts, meta)


def slot_shards(n_shards: int, slot: int, slots: int, seed: int, epoch: int) -> list[int]:
    """Shard indices slot `slot` of `slots` reads this epoch (all of them when there are fewer shards than slots)."""
    order = list(range(n_shards))
    random.Random(f"{seed}-{epoch}").shuffle(order)  # str seed: the same permutation in every process
    return order[slot::slots] if n_shards >= slots else order


def worker_batches(total: int, batch: int, rank_count: int, workers: int, worker: int) -> int:
    """Full batches worker `worker` of one rank yields: the rank's equal share of `total` in whole batches
    (at least one), dealt over its workers."""
    per_rank = max(1, total // rank_count // batch)
    return per_rank // workers + (worker < per_rank % workers)


def tar_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files of a USTAR tar (what convert writes), front to back. A minimal reader:
    Python's tarfile spends ~25 us parsing each header, a tenth of a small crop's whole cost, and ends quietly at
    a damaged one; here every header's checksum is verified and a short file is an error."""
    with open(path, "rb", buffering=1 << 20) as f:
        while True:
            header = f.read(BLOCK)
            if len(header) < BLOCK:
                raise ShardError(f"{path}: truncated (no end-of-archive marker at byte {f.tell()})")
            if header == ZERO_BLOCK:
                return
            try:
                stored = int(header[148:156].strip(b"\0 ") or b"0", 8)
                size = int(header[124:136].strip(b"\0 ") or b"0", 8)
            except ValueError:
                stored, size = -1, 0
            if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
                raise ShardError(f"{path}: damaged member header at byte {f.tell() - BLOCK} (checksum mismatch)")
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            prefix = header[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
            kind = header[156:157]
            data = f.read(size)
            if len(data) < size:
                raise ShardError(f"{path}: truncated inside {name}")
            f.seek((-size) % BLOCK, 1)
            if kind in (b"x", b"g", b"L", b"K"):
                raise ShardError(f"{path}: {name}: pax/GNU extended headers are not read here; write shards with "
                                 f"convert (plain USTAR)")
            if kind in (b"0", b"\0"):
                yield (f"{prefix}/{name}" if prefix else name), data


def shard_samples(path: Path, expected: int) -> Iterator[dict]:
    """The samples of one tar as WebDataset groups them ({"__key__", "__url__", ext: bytes}: consecutive members
    sharing the name up to the first dot of the file name); the count is checked against the index."""
    sample, n = None, 0
    try:
        for name, data in tar_members(path):
            folder, _, base = name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    n += 1
                    yield sample
                sample = {"__key__": key, "__url__": str(path)}
            sample[ext.lower()] = data
    except OSError as e:
        raise ShardError(f"{path}: unreadable shard ({type(e).__name__}: {_first_line(e)})") from None
    if sample is not None:
        n += 1
        yield sample
    if n != expected:
        raise ShardError(f"{path}: {n} samples where its index says {expected}; rerun convert or dvc pull")


def shuffle_buffer(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """Fill a buffer of `size`, then yield a random one of it for each sample read: memory bounded by `size`."""
    buf: list[dict] = []
    for sample in samples:
        if len(buf) < size:
            buf.append(sample)
            continue
        k = rng.randrange(len(buf))
        buf[k], sample = sample, buf[k]
        yield sample
    rng.shuffle(buf)
    yield from buf


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else ""


def image_bytes(sample: dict) -> tuple[str, bytes]:
    for key in IMAGE_KEYS:
        if key in sample:
            return key, sample[key]
    raise ValueError(f"no image member (keys: {', '.join(k for k in sample if not k.startswith('__'))})")


def decode_rgb(data: bytes):
    from wildtrain.data.images import load_rgb

    return load_rgb(io.BytesIO(data))


class ShardStream(IterableDataset):
    """Items `to_item(sample, transform)` from the shards; `len()` is the samples one rank yields per epoch."""

    def __init__(self, shards: Shards, to_item: Callable[[dict, Any], Any], transform, batch: int,
                 buffer: int, seed: int, rank: int = 0, world: int = 1, epoch: int = 0):
        self.shards, self.to_item, self.transform = shards, to_item, transform
        self.batch, self.buffer, self.seed = batch, max(1, buffer), seed
        self.rank, self.world, self.epoch = rank, world, epoch

    def __len__(self) -> int:
        return max(1, self.shards.total // self.world // self.batch) * self.batch

    def _pass(self, indices: list[int], keep: Callable[[int], bool]) -> Iterator[dict]:
        """One read of these shards, in order (the n-th sample kept when keep(n))."""
        n = 0
        for i in indices:
            for sample in shard_samples(self.shards.files[i], self.shards.counts[i]):
                if keep(n):
                    yield sample
                n += 1

    def _shuffled(self, indices: list[int], keep: Callable[[int], bool] | None, rng: random.Random) -> Iterator[dict]:
        """Passes over the shards, each through the shuffle buffer, endlessly: a slot short of its quota reads its
        shards again (a pass is shuffled on its own, so no sample comes twice before all came once)."""
        while True:
            got = 0
            for sample in shuffle_buffer(self._pass(indices, keep or (lambda n: True)), self.buffer, rng):
                got += 1
                yield sample
            if got == 0:
                if keep is None:
                    return  # nothing to read at all
                keep = None  # fewer samples than slots: this slot shares them all rather than starve

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        epoch = self.epoch
        self.epoch += 1  # persistent workers keep their copy: each counts its own epochs, in step with the others
        slot, slots = self.rank * workers + worker, self.world * workers
        indices = slot_shards(len(self.shards.files), slot, slots, self.seed, epoch)
        keep = None if len(self.shards.files) >= slots else (lambda n: n % slots == slot)  # None: every sample
        quota = worker_batches(self.shards.total, self.batch, self.world, workers, worker) * self.batch
        rng = random.Random(f"{self.seed}-{epoch}-{slot}")
        for sample in itertools.islice(self._shuffled(indices, keep, rng), quota):
            try:
                yield self.to_item(sample, self.transform)
            except ShardError:
                raise
            except Exception as e:
                raise ShardError(f"{sample['__url__']}: sample {sample['__key__']} unreadable "
                                 f"({type(e).__name__}: {_first_line(e)})") from None
