"""The one frozen-encoder feature store: videos -> cached encoder outputs in ArrayRecord shards.

Every method with a frozen vision encoder (VAD-LLaMA's VE, VA-GPT's CLIP and DINOv2,
T-VAU's ViT taps) and the ``extract`` CLI get their features here. A store is one folder
per (encoder, frame spec)::

    <root>/<name>-<key>/
        spec.json                 what the store holds: encoder key, frame spec, dtype
        index.json                "<content hash>/<video id>" -> [shard, record]  (atomic)
        shard-00000.array_record  one record per video, immutable once written   (atomic)
        parts/<hash>.npz          a finished video not yet packed into a shard    (atomic)

**Keys.** A video's entry is keyed by its source's content hash and its id, under a folder
keyed by the encoder (its checkpoint identity and outputs, :attr:`Encoder.key`) and the
:class:`~vau_jax.data.frames.FrameSpec`; so the same id from two sources never collides, and
a new encoder or frame spec never reuses stale features.

**Records.** Each record is a ``.npz`` (read with ``allow_pickle=False``) of the encoder's
outputs per frame, e.g. ``cls [T, D]``, ``patches [T, N, D]``, ``hidden_3 [T, N, D]``
(in the store's ``dtype``), plus ``timestamps [T]`` float64 seconds and ``indices [T]`` int64
source frame numbers, so ground truth can be mapped onto exactly the frames encoded.

**Resumable and atomic.** :meth:`FeatureStore.ensure` encodes the videos that have no entry,
each written to ``parts/`` when done (a kill loses at most the video in progress), then packs
the parts into new shards and rewrites ``index.json`` (temp file + rename, shard before
index, parts deleted last), so a reader never sees a partial file, and a rerun resumes.

**Reading.** :class:`FeatureSet` (what ``ensure`` returns) is a random-access source over
the requested videos in order: ``len``, ``[i]`` -> dict of arrays; grain reads it
(``grain.MapDataset.source``) with per-process sharding, so every train step is fed by grain
over ArrayRecord, as on a pod.

**Multi-process.** Process 0 encodes and packs; the others wait at a barrier and then read
the same files (the data dir must be shared, as a pod's is).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from vau_jax import timing
from vau_jax.data.frames import FrameSpec
from vau_jax.data.video import FrameChunk
from vau_jax.faults import kill_point

DTYPES = ("float16", "float32")
_WRITER_OPTIONS = "group_size:1"  # random access: one record per chunk


class Encoder(Protocol):
    """A frozen vision encoder as the store sees it.

    Attributes:
      key: identity of the weights, preprocessing and outputs (e.g. a converted checkpoint's
        path and content hash + the output names); part of the store's folder key.
      batch_size: frames per call (the store never passes more).
    """

    key: str
    batch_size: int

    def __call__(self, frames: np.ndarray) -> Mapping[str, Any]:
        """uint8 ``[n, S, S, 3]`` (``n <= batch_size``) -> ``{name: [n, ...]}`` arrays (may be
        device arrays still computing: the store converts one batch later)."""
        ...


class VideoSource(Protocol):
    """One video the store can encode.

    Attributes:
      id: the video id (unique within its dataset).
    """

    id: str

    def content_hash(self) -> str:
        """A hash of the video's content (not of its name or path)."""
        ...

    def frames(self, spec: FrameSpec) -> Iterator[FrameChunk]:
        """The frames the encoder sees, in chunks (:func:`vau_jax.data.frames.prepare_chunks`
        applied)."""
        ...

    def expected_frames(self, spec: FrameSpec) -> int | None:
        """How many frames :meth:`frames` yields, if known cheaply (for progress)."""
        ...


def _sha(text: str, n: int = 16) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def atomic_write(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Writes ``path`` through ``write(handle)`` to a temp file in the same folder, then
    renames it into place (a reader sees the old file or the whole new one)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def encode_record(arrays: Mapping[str, np.ndarray]) -> bytes:
    """A dict of numpy arrays -> ``.npz`` bytes (no pickled objects)."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def decode_record(data: bytes) -> dict[str, np.ndarray]:
    """``.npz`` bytes -> dict of arrays (``allow_pickle=False``: nothing is unpickled)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _progress(total: int | None, desc: str) -> Any:
    import jax
    from tqdm import tqdm

    tty = getattr(sys.stderr, "isatty", lambda: False)()
    return tqdm(
        total=total,
        desc=desc,
        unit="frame",
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5 if tty else 30.0,
        disable=jax.process_index() != 0,
    )


def encode_video(
    source: VideoSource, spec: FrameSpec, encoder: Encoder, dtype: str, bar: Any = None
) -> dict[str, np.ndarray]:
    """Runs ``encoder`` over every frame of ``source`` -> the record's arrays.

    One video of :func:`encode_videos`. Raises ``ValueError`` if the video yields no frames.
    """
    for _, arrays in encode_videos([source], spec, encoder, dtype, bar):
        return arrays
    raise AssertionError("unreachable: encode_videos yields every video or raises")


def encode_videos(
    sources: Sequence[VideoSource],
    spec: FrameSpec,
    encoder: Encoder,
    dtype: str,
    bar: Any = None,
    skip_errors: tuple[type[BaseException], ...] = (),
    failed: list[tuple[int, str]] | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Runs ``encoder`` over every frame of every source; yields ``(i, arrays)`` per video.

    Frames of consecutive videos share batches of ``encoder.batch_size`` (a folder of short
    videos fills whole batches instead of padding each video's tail), and each batch is
    dispatched before the previous one is read back, so decoding and host work overlap the
    encoder. Videos come out in order, each as soon as its last batch is read back.

    A source raising one of ``skip_errors`` while decoding is left out (``(i, message)``
    appended to ``failed``); its frames already batched are dropped. Any other error
    propagates after nothing more is yielded. A video with no frames raises ``ValueError``.
    """
    bs = int(encoder.batch_size)
    buf: list[np.ndarray] = []  # frames not yet dispatched, in order
    owners: list[int] = []  # the video of each row of `buf`
    pending: tuple[Mapping[str, Any], list[int]] | None = None  # dispatched, not read back
    parts: dict[int, dict[str, list[np.ndarray]]] = {}  # read-back rows per video
    meta: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # finished decoding: times, indices
    dropped: set[int] = set()
    order: list[int] = []  # videos finished decoding, not yet yielded

    def collect() -> None:
        nonlocal pending
        if pending is None:
            return
        out, rows = pending
        pending = None
        host = {k: np.asarray(v) for k, v in out.items()}
        start = 0
        while start < len(rows):
            vid, stop = rows[start], start
            while stop < len(rows) and rows[stop] == vid:
                stop += 1
            if vid not in dropped:
                got = parts.setdefault(vid, {})
                for k, v in host.items():
                    got.setdefault(k, []).append(v[start:stop].astype(dtype))
            start = stop
        if bar is not None:
            bar.update(len(rows))

    def dispatch(n: int) -> None:
        nonlocal buf, owners, pending
        out = encoder(np.stack(buf[:n]))  # on an error, the rows stay queued (not finished)
        rows, buf, owners = owners[:n], buf[n:], owners[n:]
        collect()
        pending = (out, rows)

    def ready() -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        # Videos are finished once no row of theirs is still queued or in flight.
        busy = set(owners) | (set(pending[1]) if pending is not None else set())
        while order and order[0] not in busy:
            vid = order.pop(0)
            got = parts.pop(vid, {})  # a video of empty chunks has timestamps only
            arrays = {k: np.concatenate(v) for k, v in got.items()}
            times, idx = meta.pop(vid)
            arrays["timestamps"], arrays["indices"] = times, idx
            yield vid, arrays

    try:
        for i, source in enumerate(sources):
            times: list[np.ndarray] = []
            idx: list[np.ndarray] = []
            chunks = _chunks(source, spec)  # opening the file counts as decoding too
            while True:
                try:  # only decoding may skip a video; an encoder error propagates
                    chunk = next(chunks, None)
                except skip_errors as err:
                    dropped.add(i)
                    keep = [j for j, o in enumerate(owners) if o != i]
                    buf, owners = [buf[j] for j in keep], [owners[j] for j in keep]
                    parts.pop(i, None)
                    if failed is not None:
                        failed.append((i, str(err)))
                    break
                if chunk is None:
                    break
                times.append(chunk.timestamps)
                idx.append(chunk.indices)
                buf.extend(chunk.frames)
                owners.extend([i] * len(chunk.frames))
                while len(buf) >= bs:
                    dispatch(bs)
                    yield from ready()
            if i in dropped:
                continue
            if not times:
                raise ValueError(f"video {source.id!r}: no frames to encode")
            meta[i] = (
                np.concatenate(times).astype(np.float64),
                np.concatenate(idx).astype(np.int64),
            )
            order.append(i)
            yield from ready()
        while buf:
            dispatch(min(bs, len(buf)))
        collect()
    except GeneratorExit:
        raise
    except BaseException:
        # An error or interrupt mid-folder: the videos whose rows were all read back or in
        # flight are still handed out (and cached by the store) before it propagates.
        try:
            collect()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        yield from ready()
        raise
    yield from ready()


def _chunks(source: VideoSource, spec: FrameSpec) -> Iterator[FrameChunk]:
    yield from source.frames(spec)


class FeatureSet:
    """The features of a list of videos, in order: a random-access source.

    ``len(fs)`` videos; ``fs[i]`` is video ``i``'s record (dict of arrays, see the module
    docstring); ``fs.ids[i]`` its id. Reads go through ``ArrayRecordDataSource`` (opened
    lazily, so the object pickles into grain workers).
    """

    def __init__(
        self,
        folder: str,
        shards: Sequence[str],
        locations: Sequence[tuple[int, int]],
        ids: Sequence[str],
    ):
        self.folder = folder
        self.shards = list(shards)  # file names in `folder`
        self.ids = list(ids)
        self._locations = list(locations)
        self._reader = None

    def __len__(self) -> int:
        return len(self.ids)

    def _open(self) -> tuple[Any, list[int]]:
        if self._reader is None:
            import grain

            paths = [os.path.join(self.folder, s) for s in self.shards]
            reader = grain.sources.ArrayRecordDataSource(paths) if paths else None
            offsets, total = [], 0
            for p in paths:
                offsets.append(total)
                total += len(grain.sources.ArrayRecordDataSource([p]))
            self._reader = (reader, offsets)
        return self._reader

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        reader, offsets = self._open()
        s, r = self._locations[int(i)]
        return decode_record(reader[offsets[s] + r])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_reader": None}

    def __repr__(self) -> str:
        return f"FeatureSet({self.folder!r}, {len(self)} videos, {len(self.shards)} shards)"


@dataclasses.dataclass
class _Index:
    shards: list[str]
    entries: dict[str, tuple[int, int]]  # key -> (shard number in `shards`, record)

    @staticmethod
    def read(path: str) -> _Index:
        if not os.path.isfile(path):
            return _Index([], {})
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        return _Index(
            list(raw["shards"]), {k: (int(a), int(b)) for k, (a, b) in raw["entries"].items()}
        )

    def write(self, path: str) -> None:
        body = {"shards": self.shards, "entries": {k: list(v) for k, v in self.entries.items()}}
        atomic_write(path, lambda f: json.dump(body, f, sort_keys=True), mode="w")


class FeatureStore:
    """Cached encoder outputs of videos for one (encoder, frame spec) (module docstring).

    Building the object is cheap (it only computes the folder name); :meth:`ensure` does
    the work.

    Args:
      root: where stores live (e.g. ``<data_dir>/features``).
      encoder: the frozen encoder (:class:`Encoder`).
      spec: the frame spec.
      dtype: storage dtype of the outputs, ``"float16"`` or ``"float32"``.
      name: a readable prefix of the folder name.
      videos_per_shard: videos per ArrayRecord shard.
    """

    def __init__(
        self,
        root: str,
        encoder: Encoder,
        spec: FrameSpec,
        *,
        dtype: str = "float16",
        name: str = "features",
        videos_per_shard: int = 64,
    ):
        if dtype not in DTYPES:
            raise ValueError(f"feature dtype must be one of {DTYPES}, got {dtype!r}")
        self.encoder, self.spec, self.dtype = encoder, spec, dtype
        self.videos_per_shard = int(videos_per_shard)
        self.spec_json = {"encoder": encoder.key, "frames": json.loads(spec.key()), "dtype": dtype}
        key = _sha(json.dumps(self.spec_json, sort_keys=True), 12)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        self.folder = os.path.join(root, f"{safe}-{key}")

    # -- keys ------------------------------------------------------------------------------

    @staticmethod
    def entry_key(source: VideoSource) -> str:
        """``"<content hash>/<video id>"``: a video's key within the store."""
        return f"{source.content_hash()}/{source.id}"

    def _part_path(self, key: str) -> str:
        return os.path.join(self.folder, "parts", _sha(key, 24) + ".npz")

    # -- writing ---------------------------------------------------------------------------

    def ensure(
        self,
        sources: Sequence[VideoSource],
        desc: str = "features",
        skip_errors: tuple[type[BaseException], ...] = (),
    ) -> FeatureSet:
        """Encodes the videos that have no entry yet, packs them, returns their :class:`FeatureSet`.

        Idempotent and resumable (see the module docstring). ``desc`` labels the progress bar.
        A video raising one of ``skip_errors`` while decoding is left out (its message is
        in ``self.failed``; the others are kept); any other error propagates, and the
        videos finished before it stay cached.
        """
        import jax

        keys = [self.entry_key(s) for s in sources]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})[:3]
            raise ValueError(f"{self.folder}: the same video is listed twice: {dup}")
        self.failed: list[str] = []
        bad: set[str] = set()
        if jax.process_index() == 0:
            with timing.phase("features"):
                bad = self._fill(sources, keys, desc, tuple(skip_errors))
        _barrier(f"feature-store-{os.path.basename(self.folder)}")
        good = [(k, s.id) for k, s in zip(keys, sources) if k not in bad]
        return self.view([k for k, _ in good], [i for _, i in good])

    def _fill(
        self,
        sources: Sequence[VideoSource],
        keys: Sequence[str],
        desc: str,
        skip_errors: tuple[type[BaseException], ...],
    ) -> set[str]:
        os.makedirs(os.path.join(self.folder, "parts"), exist_ok=True)
        spec_path = os.path.join(self.folder, "spec.json")
        if not os.path.isfile(spec_path):
            atomic_write(spec_path, lambda f: json.dump(self.spec_json, f, indent=1), mode="w")
        index = _Index.read(os.path.join(self.folder, "index.json"))
        todo = [
            (s, k)
            for s, k in zip(sources, keys)
            if k not in index.entries and not os.path.isfile(self._part_path(k))
        ]
        bad: set[str] = set()
        if todo:
            counts = []
            for s, _ in todo:
                try:
                    counts.append(s.expected_frames(self.spec))
                except skip_errors:
                    counts.append(None)
            total = sum(counts) if all(c is not None for c in counts) else None
            bar = _progress(total, f"{desc}: {len(todo)} videos")
            failed: list[tuple[int, str]] = []
            try:
                for i, arrays in encode_videos(
                    [s for s, _ in todo],
                    self.spec,
                    self.encoder,
                    self.dtype,
                    bar,
                    skip_errors,
                    failed,
                ):
                    s, k = todo[i]
                    arrays["video_id"] = np.asarray(s.id)
                    atomic_write(self._part_path(k), lambda f, a=arrays: np.savez(f, **a))
                    kill_point("features")
            finally:
                bar.close()
                for i, msg in failed:
                    self.failed.append(msg)
                    bad.add(todo[i][1])
        self._pack(index, [k for k in keys if k not in bad])
        return bad

    def _pack(self, index: _Index, keys: Sequence[str]) -> None:
        """Moves finished parts of ``keys`` into new shards, then rewrites the index."""
        pending = [k for k in keys if k not in index.entries and os.path.isfile(self._part_path(k))]
        if not pending:
            self._clean(index)
            return
        from array_record.python.array_record_module import ArrayRecordWriter

        n = len(index.shards)
        for a in range(0, len(pending), self.videos_per_shard):
            group = pending[a : a + self.videos_per_shard]
            while os.path.exists(os.path.join(self.folder, f"shard-{n:05d}.array_record")):
                n += 1  # an orphan of an interrupted pack: never overwritten, cleaned below
            name = f"shard-{n:05d}.array_record"
            final = os.path.join(self.folder, name)
            tmp = os.path.join(self.folder, f".tmp-{os.getpid()}-{name}")
            writer = ArrayRecordWriter(tmp, _WRITER_OPTIONS)
            try:
                for k in group:
                    with open(self._part_path(k), "rb") as f:
                        writer.write(f.read())
            finally:
                writer.close()
            os.replace(tmp, final)
            index.shards.append(name)
            for r, k in enumerate(group):
                index.entries[k] = (len(index.shards) - 1, r)
            n += 1
        kill_point("features")  # (tests) shards written, the index not yet
        index.write(os.path.join(self.folder, "index.json"))
        self._clean(index)

    def _clean(self, index: _Index) -> None:
        """Deletes packed parts and shard files no index entry points at (interrupted packs)."""
        packed = {_sha(k, 24) + ".npz" for k in index.entries}
        parts = os.path.join(self.folder, "parts")
        for name in os.listdir(parts) if os.path.isdir(parts) else []:
            if name in packed:
                os.remove(os.path.join(parts, name))
        live = set(index.shards)
        for name in os.listdir(self.folder):
            if name.startswith("shard-") and name not in live:
                os.remove(os.path.join(self.folder, name))

    # -- reading ---------------------------------------------------------------------------

    def read_all(self) -> FeatureSet:
        """Every packed video of the store, in index order."""
        return open_store(self.folder)

    def view(self, keys: Sequence[str], ids: Sequence[str]) -> FeatureSet:
        """The :class:`FeatureSet` of entries ``keys`` (all must be packed)."""
        index = _Index.read(os.path.join(self.folder, "index.json"))
        missing = [k for k in keys if k not in index.entries]
        if missing:
            raise KeyError(f"{self.folder}: no features for {missing[:3]} (run ensure first)")
        used = sorted({index.entries[k][0] for k in keys})
        remap = {s: i for i, s in enumerate(used)}
        locations = [(remap[index.entries[k][0]], index.entries[k][1]) for k in keys]
        return FeatureSet(self.folder, [index.shards[s] for s in used], locations, ids)


def open_store(folder: str) -> FeatureSet:
    """A :class:`FeatureSet` over every video packed in a store folder (e.g. the output of
    ``python -m vau_jax.extract``), sorted by video id; ``fs.keys`` are the entry keys."""
    path = os.path.join(folder, "index.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; not a feature store folder")
    index = _Index.read(path)
    keys = sorted(index.entries, key=lambda k: (k.split("/", 1)[1], k))
    ids = [k.split("/", 1)[1] for k in keys]
    locations = [index.entries[k] for k in keys]
    fs = FeatureSet(folder, index.shards, locations, ids)
    fs.keys = keys
    return fs
