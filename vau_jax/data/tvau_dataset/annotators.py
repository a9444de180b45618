"""T-VAU stage-1 annotators: the :class:`Annotator` protocol, the :data:`ANNOTATORS`
registry, the SynthVAD ``oracle`` and its ``noisy`` view (:class:`NoiseConfig`).
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Protocol

import numpy as np

from vau_jax.data.formats.record import FormatError
from vau_jax.data.tvau_dataset.records import (
    DROP_REASONS,
    SIZES,
    Annotation,
    VideoInput,
    _palette,
    colour_word,
    make_record,
)


class Annotator(Protocol):
    """Writes the stage-1 records of one video on the sampled ``frames`` (int [F]).

    A class attribute ``parallel = True`` declares ``annotate`` a pure function of its
    arguments that pickles with its instance: :func:`vau_jax.data.tvau_dataset.build` may
    then call it in worker processes (an LLM client holding a connection should not)."""

    def __init__(self, seed: int = 0, **options: Any) -> None: ...

    def annotate(self, video: VideoInput, frames: np.ndarray) -> Annotation: ...


ANNOTATORS: dict[str, type] = {}


def register(name: str, cls: type) -> type:
    """Adds an annotator class (e.g. an LLM/VLM prompting one) under ``name``."""
    ANNOTATORS[name] = cls
    return cls


def _action(kind: str, anomalous: bool, anomaly_type: str, on_anomaly: bool) -> str:
    """The oracle's action word of a track kind on a frame (``on_anomaly``: labelled)."""
    if kind != "person":
        return {"vehicle": "driving", "fire": "burning", "explosion": "exploding"}.get(
            kind, "static"
        )
    if anomalous and (anomaly_type == "running" or on_anomaly):
        return {"running": "running", "fighting": "fighting", "falling": "falling"}.get(
            anomaly_type, "walking"
        )
    return "walking"


class OracleAnnotator:
    """The SynthVAD renderer's ground truth (re-rendered from ``meta.json``)."""

    parallel = True  # deterministic in the video: worker processes may annotate

    def __init__(self, seed: int = 0, **options: Any) -> None:
        del seed, options  # deterministic: nothing to draw

    def annotate(self, video: VideoInput, frames: np.ndarray) -> Annotation:
        from vau_jax.data.synthvad.render import render_video
        from vau_jax.data.synthvad.types import SynthConfig

        rec, meta = video.record, video.synth
        if meta is None:
            raise FormatError(
                f"{rec.path}: the oracle annotator needs SynthVAD ground truth (meta.json next "
                "to the tree); a real dataset needs an LLM/VLM annotator (register())"
            )
        rendered = render_video(
            meta["seed"], SynthConfig(**meta["config"]), meta["anomaly_type"], meta["id"]
        )
        if rendered.num_frames != video.n_frames or (
            video.has_truth and not np.array_equal(rendered.labels, video.labels)
        ):
            raise FormatError(
                f"{meta['meta_path']}: video {rec.id!r}: the re-rendered ground truth "
                "disagrees with the dataset's frame count or frame labels"
            )
        keep = np.zeros(rendered.num_frames, bool)
        keep[frames] = True
        out = []
        for i, tr in enumerate(rendered.tracks):
            for t, box in zip(tr.frames.tolist(), tr.boxes.tolist()):
                if not keep[t]:
                    continue
                colour = colour_word(rendered.frames[t][rendered.masks[t] == i + 1])  # [N, 3]
                act = _action(tr.kind, tr.anomalous, rendered.anomaly_type, rendered.labels[t])
                w, h = video.width, video.height
                out.append(
                    make_record(t, i, tr.kind, colour, act, box, w, h, anomalous=tr.anomalous)
                )
        out.sort(key=lambda r: (r.frame, r.object_id))
        return Annotation(out, rendered.anomaly_type, rendered.labels)


register("oracle", OracleAnnotator)


@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """``noisy`` annotator knobs: box jitter std in pixels, per-record probability of a
    swapped colour/size word, per-video probability of injecting each contradiction."""

    jitter: float = 1.0
    swap: float = 0.1
    contradict: float = 0.5


def parse_noise(spec: str) -> NoiseConfig:
    """``"jitter=1.0,swap=0.1,contradict=0.5"`` (any subset) -> :class:`NoiseConfig`."""
    fields = {f.name for f in dataclasses.fields(NoiseConfig)}
    values: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        key, _, value = item.partition("=")
        if key not in fields:
            raise ValueError(f"--noise: unknown key {key!r} in {spec!r}; keys: {sorted(fields)}")
        try:
            values[key] = float(value)
        except ValueError:
            raise ValueError(f"--noise: {key}={value!r} is not a number") from None
        if values[key] < 0 or (key != "jitter" and values[key] > 1):
            raise ValueError(f"--noise: {key}={value} out of range")
    return NoiseConfig(**values)


class NoisyAnnotator:
    """The oracle seen through a noisy annotator (module docstring), deterministic in ``seed``."""

    parallel = True  # its noise is drawn from (seed, video id): worker processes may annotate

    def __init__(self, seed: int = 0, noise: NoiseConfig | str | None = None, **options: Any):
        self.seed, self.oracle = int(seed), OracleAnnotator(**options)
        self.noise = parse_noise(noise) if isinstance(noise, str) or noise is None else noise

    def annotate(self, video: VideoInput, frames: np.ndarray) -> Annotation:
        base = self.oracle.annotate(video, frames)
        rng = np.random.default_rng([self.seed, zlib.crc32(video.record.id.encode())])
        names = [n for n in _palette()[0] if n is not None]
        w, h, cfg = video.width, video.height, self.noise
        limit = np.array([w - 1, h - 1, w - 1, h - 1])
        out = []
        for r in base.records:
            box = np.clip(np.asarray(r.box) + np.rint(rng.normal(0, cfg.jitter, 4)), 0, limit)
            box = np.r_[np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])]
            colour = names[rng.integers(len(names))] if rng.random() < cfg.swap else r.colour
            new = make_record(r.frame, r.object_id, r.kind, colour, r.action, box, w, h)
            if rng.random() < cfg.swap:
                new = dataclasses.replace(new, size=SIZES[rng.integers(3)])
            out.append(new)
        injected = dict.fromkeys(DROP_REASONS, 0)
        span = (frames[-1] - frames[0]) / video.fps if len(frames) else 0.0
        next_id = 1 + max((r.object_id for r in base.records), default=-1)
        for reason in DROP_REASONS:
            if rng.random() >= cfg.contradict or len(frames) < 4 or span < 1.0:
                continue
            out += _contradiction(reason, next_id, frames, rng, w, h)
            injected[reason], next_id = 1, next_id + 1
        out.sort(key=lambda r: (r.frame, r.object_id))
        return Annotation(out, base.anomaly_type, base.labels, injected)


def _contradiction(reason: str, oid: int, frames: np.ndarray, rng, w: int, h: int) -> list:
    """Records of one injected object whose appearance and motion contradict each other:
    a "static" bag sweeping across the frame, or a "running" person that never moves."""
    sweep = reason == "static_moves"
    bw, bh = (max(2, w // 12), max(2, h // 14)) if sweep else (max(2, w // 16), max(3, h // 6))
    y, x0 = int(rng.integers(0, h - bh)), int(rng.integers(0, w - bw))
    xs = np.linspace(0, w - bw - 1, len(frames)) if sweep else np.full(len(frames), x0)
    xs = (xs[::-1] if sweep and rng.random() < 0.5 else xs).round().astype(int)
    kind, action = ("object", "static") if sweep else ("person", "running")
    return [
        make_record(t, oid, kind, None, action, (x, y, x + bw - 1, y + bh - 1), w, h)
        for t, x in zip(frames, xs)
    ]


register("noisy", NoisyAnnotator)
