"""grain input pipelines: per-process shards of any random-access source of dict examples,
seeded shuffle, repeat, per-example transforms, padding with masks, batching, global arrays.

Order of operations (all on a ``grain.MapDataset``, so the iterator state is just an index
and is cheap to checkpoint)::

    source -> seed -> shuffle (global, same on every process) -> repeat(num_epochs)
      -> remainder handling (drop or pad; adds "example_mask") -> user transforms
      -> tokenise (optional) -> pad/crop to static lengths (+ masks) -> this process' shard
      -> batch(local batch) -> IterDataset (threads; optional worker processes)

Shapes and keys of a batch (``B`` = global batch size / process count):

* every numeric array of an example gets a leading ``[B]`` axis; strings become a numpy
  string array ``[B]``; other values become a list of length ``B``;
* ``example_mask``: bool ``[B]``, False on padding examples (only when
  ``drop_remainder=False``; they repeat real examples and must be masked out of metrics);
* for each key in ``PipelineConfig.pad_lengths``: the array padded (zeros) or cropped
  (first ``L`` entries) along its first axis to ``L``, and ``<key>_mask``: bool ``[B, L]``,
  True on real entries (e.g. ``frames`` ``[B, L, H, W, 3]`` + ``frames_mask`` ``[B, L]``);
* with a tokenizer: ``input_ids`` int32 ``[B, S]``, ``attention_mask`` bool ``[B, S]``,
  ``loss_mask`` bool ``[B, S]`` (see :class:`TokenizeConversation`).

Multi-process: every process builds the same pipeline; shuffling is global (same seed
everywhere) and the stream is cut (or padded) to a multiple of ``n * B`` so every process
yields the same number of batches. Global batch ``t`` is positions ``[t·n·B, (t+1)·n·B)``;
process ``i`` of ``n`` takes its ``i``-th block of ``B`` consecutive positions
``[t·n·B + i·B, t·n·B + (i+1)·B)``. :func:`to_global` then assembles ``jax.Array`` s with
``jax.make_array_from_process_local_data`` (local batches concatenated in process order),
so the global batch is the single-process one, example for example and device for device:
a run's numbers do not depend on how many processes feed it (up to the reduction order of
the collectives).

Worker processes (``worker_count > 0``) need absl flags parsed: run under
``absl.app.run`` or call ``absl.flags.FLAGS.mark_as_parsed()`` first; ``worker_count=0``
(the default) reads in threads of the main process and needs nothing.

Checkpointing: ``it = make_iterator(...)``; ``state = it.get_state()`` (a small dict) and
``it.set_state(state)`` on a fresh iterator of the same pipeline resumes with exactly the
batches the first one would have produced next.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import grain
import jax
import numpy as np

from vau_jax.data import templates as T

Example = dict[str, Any]


class TokenizerLike(Protocol):
    """What the pipeline needs from a tokenizer (see ``vau_jax.data.tokenizer``)."""

    bos_id: int
    eos_id: int
    pad_id: int

    def encode(self, text: str, add_bos: bool = False) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """How examples become batches (frozen, hashable, JSON-able via ``asdict``).

    Attributes:
      global_batch_size: examples per step over all processes; divisible by the process
        count.
      seed: shuffle and random-transform seed (same on every process).
      shuffle: shuffle globally, differently each epoch.
      num_epochs: passes over the source; ``None`` repeats forever.
      drop_remainder: True drops the last incomplete global batch; False pads it with
        repeated examples marked ``example_mask=False`` (evaluation: every example is seen
        exactly once). Irrelevant when ``num_epochs`` is None.
      pad_lengths: ``(key, L)`` pairs: pad/crop ``example[key]`` along axis 0 to ``L`` and
        add ``<key>_mask``.
      max_text_length: token length ``S`` when tokenising conversations.
      conversation_key: the example key holding a conversation (list of turns).
      video_token_id: None drops the ``<video>`` marker from the text (vision tokens are a
        prefix); an int inserts that id in its place.
      worker_count: grain worker processes (0 = threads in this process).
      read_threads: threads reading/transforming examples.
      prefetch: batches read ahead, at least ``read_threads`` (mind video batch memory).
    """

    global_batch_size: int
    seed: int = 0
    shuffle: bool = True
    num_epochs: int | None = 1
    drop_remainder: bool = True
    pad_lengths: tuple[tuple[str, int], ...] = ()
    max_text_length: int = 128
    conversation_key: str = "conversation"
    video_token_id: int | None = None
    worker_count: int = 0
    read_threads: int = 2
    prefetch: int = 2


# --- per-example transforms -----------------------------------------------------------------


class KeepKeys(grain.transforms.Map):
    """Keeps only ``keys`` of an example (e.g. drop per-video tables that do not batch)."""

    def __init__(self, keys: Sequence[str]):
        self.keys = tuple(keys)

    def map(self, element: Example) -> Example:
        missing = [k for k in self.keys if k not in element]
        if missing:
            raise KeyError(f"KeepKeys: example has no keys {missing} (keys: {sorted(element)})")
        return {k: element[k] for k in self.keys}


class PadToLength(grain.transforms.Map):
    """Pads (zeros) or crops (keeps the first ``L``) arrays along axis 0 and adds masks.

    ``lengths`` maps a key to ``L``; the output has ``key`` ``[L, ...]`` and ``key_mask``
    bool ``[L]``.
    """

    def __init__(self, lengths: Mapping[str, int]):
        self.lengths = dict(lengths)

    def map(self, element: Example) -> Example:
        out = dict(element)
        for key, length in self.lengths.items():
            if key not in element:
                raise KeyError(f"PadToLength: example has no key {key!r} (keys: {sorted(element)})")
            x = np.asarray(element[key])
            if x.ndim == 0:
                raise ValueError(f"PadToLength: {key!r} is a scalar, it needs a leading axis")
            n = min(x.shape[0], length)
            padded = np.zeros((length, *x.shape[1:]), x.dtype)
            padded[:n] = x[:n]
            mask = np.zeros((length,), bool)
            mask[:n] = True
            out[key] = padded
            out[f"{key}_mask"] = mask
        return out


class TokenizeConversation(grain.transforms.Map):
    """Renders a LLaVA conversation as Vicuna-style text and tokenises it.

    Text: ``SYSTEM_PROMPT`` then per turn ``ROLE_PREFIX[role] + value`` (templates), an EOS
    after each assistant turn; BOS first. Output (``S`` = ``max_length``):

    * ``input_ids`` int32 ``[S]`` (right-padded with ``pad_id``, right-truncated),
    * ``attention_mask`` bool ``[S]``, True on real tokens,
    * ``loss_mask`` bool ``[S]``: True where ``input_ids[i]`` is an assistant token (or its
      EOS), i.e. a target predicted from positions ``< i``; the trainer shifts.

    The ``<video>`` marker is dropped (``video_token_id=None``) or replaced by that id.
    The conversation key is removed from the example.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike,
        max_length: int,
        key: str = "conversation",
        video_token_id: int | None = None,
        system_prompt: str = T.SYSTEM_PROMPT,
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.key = key
        self.video_token_id = video_token_id
        self.system_prompt = system_prompt

    def _encode_human(self, text: str) -> list[int]:
        ids: list[int] = []
        pieces = text.split(T.VIDEO_MARKER)
        for i, piece in enumerate(pieces):
            if i > 0:
                if self.video_token_id is not None:
                    ids.append(self.video_token_id)
                piece = piece.removeprefix("\n")
            if piece:
                ids.extend(self.tokenizer.encode(piece))
        return ids

    def tokenize(self, conversation: Sequence[Mapping[str, str]]) -> dict[str, np.ndarray]:
        """Token ids and masks of one conversation (see the class docstring)."""
        tok = self.tokenizer
        ids = [tok.bos_id] + list(tok.encode(self.system_prompt))
        targets = [False] * len(ids)
        for turn in conversation:
            role, value = turn["from"], turn["value"]
            if role not in T.ROLE_PREFIX:
                raise ValueError(
                    f"TokenizeConversation: unknown role {role!r}; expected {tuple(T.ROLE_PREFIX)}"
                )
            prefix = list(tok.encode(T.ROLE_PREFIX[role]))
            ids += prefix
            targets += [False] * len(prefix)
            if role == "human":
                body = self._encode_human(value)
                ids += body
                targets += [False] * len(body)
            else:
                body = list(tok.encode(value)) + [tok.eos_id]
                ids += body
                targets += [True] * len(body)
        n = min(len(ids), self.max_length)
        out_ids = np.full((self.max_length,), tok.pad_id, np.int32)
        out_ids[:n] = ids[:n]
        attention = np.zeros((self.max_length,), bool)
        attention[:n] = True
        loss = np.zeros((self.max_length,), bool)
        loss[:n] = targets[:n]
        return {"input_ids": out_ids, "attention_mask": attention, "loss_mask": loss}

    def map(self, element: Example) -> Example:
        out = {k: v for k, v in element.items() if k != self.key}
        out.update(self.tokenize(element[self.key]))
        return out


# --- batching -------------------------------------------------------------------------------


def collate(examples: Sequence[Example]) -> Example:
    """Stacks a list of dict examples: numeric arrays/scalars -> ``[B, ...]`` numpy arrays,
    str/bytes -> numpy string array ``[B]``, nested dicts recursively, anything else -> list.

    Raises:
      ValueError: naming the key, when examples have different keys or array shapes.
    """
    keys = list(examples[0])
    out: Example = {}
    for ex in examples[1:]:
        if list(ex) != keys and set(ex) != set(keys):
            raise ValueError(
                f"collate: examples have different keys: {sorted(keys)} vs {sorted(ex)}"
            )
    for key in keys:
        values = [ex[key] for ex in examples]
        first = values[0]
        if isinstance(first, Mapping):
            out[key] = collate(values)
        elif isinstance(first, (str, bytes)):
            out[key] = np.asarray(values)  # [B] str_ or bytes_
        elif isinstance(first, (np.ndarray, np.generic, bool, int, float)):
            shapes = {np.shape(v) for v in values}
            if len(shapes) > 1:
                raise ValueError(
                    f"collate: key {key!r} has different shapes {sorted(shapes)}; "
                    f"pad it with PipelineConfig.pad_lengths"
                )
            out[key] = np.stack([np.asarray(v) for v in values])
        else:
            out[key] = list(values)
    return out


# --- the dataset ----------------------------------------------------------------------------


def _shard(shard_options: grain.sharding.ShardOptions | None) -> tuple[int, int]:
    if shard_options is None:
        return jax.process_index(), jax.process_count()
    return shard_options.shard_index, shard_options.shard_count


class _MarkReal(grain.transforms.MapWithIndex):
    """Adds ``example_mask``: True for global positions below ``num_real`` (real examples)."""

    def __init__(self, num_real: int):
        self.num_real = num_real

    def map_with_index(self, index: int, element: Example) -> Example:
        return {**element, "example_mask": np.bool_(index < self.num_real)}


def make_dataset(
    source: grain.sources.RandomAccessDataSource | Sequence[Example],
    config: PipelineConfig,
    *,
    transforms: Sequence[grain.transforms.Map | grain.transforms.RandomMap | Callable] = (),
    tokenizer: TokenizerLike | None = None,
    shard_options: grain.sharding.ShardOptions | None = None,
) -> grain.IterDataset:
    """This process' batches of ``source`` as a grain ``IterDataset``.

    Args:
      source: random-access source of dict examples (``__len__``, ``__getitem__``).
      config: batching, shuffling, padding and reading options.
      transforms: per-example transforms, in order: plain callables
        and ``grain.transforms.Map`` run as maps; ``grain.transforms.RandomMap`` get an rng
        derived from ``config.seed`` and the example's position (deterministic, resumable).
      tokenizer: if given, ``config.conversation_key`` is tokenised
        (:class:`TokenizeConversation`).
      shard_options: this process' shard; default ``jax.process_index()`` of
        ``jax.process_count()`` (grain's ``ShardByJaxProcess``). Its ``drop_remainder`` is
        ignored: ``config.drop_remainder`` decides for the whole stream.

    Returns:
      An ``IterDataset`` of batches (see the module docstring for their keys and shapes).
    """
    index, count = _shard(shard_options)
    if config.global_batch_size % count:
        raise ValueError(
            f"global_batch_size {config.global_batch_size} is not divisible by the "
            f"{count} processes"
        )
    local_batch = config.global_batch_size // count
    step = count * local_batch  # global examples per step
    ds = grain.MapDataset.source(source).seed(config.seed)
    num_source = len(ds)
    if num_source == 0:
        raise ValueError("make_dataset: the source is empty")
    if config.shuffle:
        ds = ds.shuffle()
    if config.num_epochs != 1:
        ds = ds.repeat(config.num_epochs)
    total = len(ds)
    if config.drop_remainder or config.num_epochs is None:
        ds = ds.slice(slice(0, (total // step) * step))
        ds = ds.map_with_index(_MarkReal(total))
    else:
        padded = -(-total // step) * step
        if padded > total:
            ds = ds.repeat(-(-padded // total), reseed_each_epoch=False)
            ds = ds.slice(slice(0, padded))
        ds = ds.map_with_index(_MarkReal(total))
    if len(ds) == 0:
        raise ValueError(
            f"make_dataset: {total} examples make no full global batch of {step}; "
            "use drop_remainder=False or a smaller batch"
        )
    for transform in transforms:
        if isinstance(transform, grain.transforms.RandomMap):
            ds = ds.random_map(transform)
        else:
            ds = ds.map(transform)
    if tokenizer is not None:
        ds = ds.map(
            TokenizeConversation(
                tokenizer,
                config.max_text_length,
                key=config.conversation_key,
                video_token_id=config.video_token_id,
            )
        )
    if config.pad_lengths:
        ds = ds.map(PadToLength(dict(config.pad_lengths)))
    # Batch, then shard: process `index` takes every `count`-th local batch starting at
    # `index`, i.e. its contiguous block of each global batch (module docstring), so the
    # processes' batches concatenated in process order are the single-process global batch.
    # MapDataset is lazy: each process still only reads and transforms its own examples, and
    # random transforms are seeded by the global position.
    ds = ds.batch(local_batch, drop_remainder=True, batch_fn=collate)
    ds = ds.slice(slice(index, None, count))
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(
            num_threads=config.read_threads,
            prefetch_buffer_size=max(config.prefetch, config.read_threads),
        )
    )
    if config.worker_count > 0:
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.worker_count))
    return it_ds


def make_iterator(
    source: grain.sources.RandomAccessDataSource | Sequence[Example],
    config: PipelineConfig,
    **kwargs: Any,
) -> grain.DatasetIterator:
    """``iter(make_dataset(...))``: a checkpointable iterator (``get_state``/``set_state``)."""
    return iter(make_dataset(source, config, **kwargs))


def num_batches(num_examples: int, config: PipelineConfig) -> int:
    """Global steps one pass of ``make_dataset`` yields for ``num_examples`` source examples
    (finite ``num_epochs`` only)."""
    if config.num_epochs is None:
        raise ValueError("num_batches: num_epochs=None repeats forever")
    total = num_examples * config.num_epochs
    if config.drop_remainder:
        return total // config.global_batch_size
    return -(-total // config.global_batch_size)


def to_global(batch: Example, sharding: jax.sharding.Sharding) -> Example:
    """This process' batch -> global ``jax.Array`` s laid out by ``sharding``.

    Every numeric/bool array becomes ``jax.make_array_from_process_local_data(sharding, x)``
    (the global batch axis is the processes' local batches concatenated in process order);
    the sharding's spec applies to the leading axes, the rest are replicated. String arrays
    and lists stay host-local numpy/lists (they cannot live on devices).
    """

    def convert(x: Any) -> Any:
        if isinstance(x, np.ndarray) and x.dtype.kind in "biufc":
            return jax.make_array_from_process_local_data(sharding, x)
        return x

    return {
        k: to_global(v, sharding) if isinstance(v, Mapping) else convert(v)
        for k, v in batch.items()
    }
