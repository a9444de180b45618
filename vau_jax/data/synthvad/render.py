"""Render one SynthVAD video and derive its ground truth (labels, tracks, masks, text)."""

from __future__ import annotations

import numpy as np

from vau_jax.data.synthvad import text
from vau_jax.data.synthvad.actors import SHIRTS, Actor
from vau_jax.data.synthvad.anomalies import BUILDERS, Context, normal_walkers
from vau_jax.data.synthvad.draw import paint_frames
from vau_jax.data.synthvad.scene import Scene, make_scene
from vau_jax.data.synthvad.types import NORMAL, SynthConfig, SynthVideo, Track, label_runs

_MAX_ATTEMPTS = 8  # an anomaly that never becomes visible is re-drawn (rare)


def render_video(
    seed: int,
    config: SynthConfig | None = None,
    anomaly_type: str | None = None,
    video_id: str | None = None,
    scene: Scene | None = None,
) -> SynthVideo:
    """Render the video of ``seed``; the same seed and config give identical bytes.

    Args:
      seed: the only source of randomness (``np.random.default_rng(seed)``).
      config: sizes, fps, lengths, anomaly probability and types (default ``SynthConfig()``).
      anomaly_type: force "normal" or one of ``config.anomaly_types``; None draws it from the
        seed with ``config.anomaly_prob``.
      video_id: id to record; defaults to ``"seed_<seed>"``.
      scene: film this static scene instead of the seed's own (everything else, walkers,
        the event and the light, still comes from the seed): consecutive segments of one
        camera, e.g. the long streams of ``bench/stream.py``.

    Returns:
      the frames with their ground truth (see :class:`SynthVideo`).
    """
    config = SynthConfig() if config is None else config
    rng = np.random.default_rng(seed)
    if anomaly_type is None:
        if rng.uniform() < config.anomaly_prob:
            anomaly_type = config.anomaly_types[int(rng.integers(len(config.anomaly_types)))]
        else:
            anomaly_type = NORMAL
    if anomaly_type != NORMAL and anomaly_type not in BUILDERS:
        raise ValueError(f"render_video: unknown anomaly type {anomaly_type!r}")
    h, w, fps = config.height, config.width, float(config.fps)
    num_frames = max(2, int(round(rng.uniform(config.min_seconds, config.max_seconds) * fps)))
    own = make_scene(rng, h, w, config.domain)  # drawn either way: the same rng stream
    scene = own if scene is None else scene
    shirts = [int(i) for i in rng.permutation(len(SHIRTS))]
    shifted = config.domain == "shifted"
    ctx = Context(rng, scene, num_frames, fps, h, w, shirts, 1.3 if shifted else 1.0)
    walkers = normal_walkers(ctx, int(rng.integers(config.min_walkers, config.max_walkers + 1)))
    light = _light(rng, num_frames, fps, noise=2.2 if shifted else 1.0)

    for _ in range(_MAX_ATTEMPTS):
        actors, window = list(walkers), np.zeros(num_frames, bool)
        if anomaly_type != NORMAL:
            anomaly = BUILDERS[anomaly_type](ctx)
            actors += anomaly.actors
            window = anomaly.window
        frames, masks, tracks, kept = _composite(rng, scene, actors, light)
        visible = np.zeros(num_frames, bool)
        for tr in tracks:
            if tr.anomalous:
                visible[tr.frames] = True
        labels = (window & visible).astype(np.uint8)
        if anomaly_type == NORMAL or labels.any():
            break
    else:
        raise RuntimeError(f"render_video(seed={seed}): the {anomaly_type} never became visible")

    infos = [actors[i].info for i in kept]  # template words of each track
    fields = _fields(anomaly_type, infos, tracks, labels, w, h)
    return SynthVideo(
        video_id=video_id if video_id is not None else f"seed_{seed}",
        seed=int(seed),
        frames=frames,
        fps=fps,
        labels=labels,
        anomaly_type=anomaly_type,
        intervals=_intervals(labels, fps),
        tracks=tracks,
        masks=masks,
        spatial_word=fields.get("where", ""),
        scene_description=text.scene_description(
            scene.ground,
            scene.paths[1].orientation,
            scene.paving,
            [b.colour for b in scene.buildings],
            scene.num_trees,
        ),
        event_description=text.event_description(rng, anomaly_type, fields),
        frame_captions=_captions(anomaly_type, tracks, labels, w, h),
    )


def _light(
    rng: np.random.Generator, num_frames: int, fps: float, noise: float = 1.0
) -> dict[str, np.ndarray]:
    """Slow global gain and colour-temperature drift, and the camera noise level (times
    ``noise``: the "shifted" domain's camera is noisier)."""
    t = np.arange(num_frames) / fps
    gain = 1.0 + rng.uniform(0.03, 0.08) * np.sin(
        2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 2 * np.pi)
    )
    warm = rng.uniform(2.0, 6.0) * np.sin(
        2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 2 * np.pi)
    )
    tint = warm[:, None] * np.array([1.0, 0.2, -1.0])  # [T, 3]
    return {
        "gain": gain.astype(np.float32),
        "tint": tint.astype(np.float32),
        "sigma": np.float32(rng.uniform(1.5, 4.0) * noise),
    }


def _composite(
    rng: np.random.Generator, scene: Scene, actors: list[Actor], light: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[Track], list[int]]:
    """Paint every frame.

    Returns frames uint8 [T, H, W, 3], masks uint8 [T, H, W], the tracks, and for each track
    the index of its actor (actors never visible get no track).

    Normal actors are painted back to front (by anchor y), anomalous ones on top. Track boxes
    are the bounding boxes of each actor's *visible* mask pixels.
    """
    num_frames = len(actors[0].parts)
    h, w = scene.image.shape[:2]
    frames = np.empty((num_frames, h, w, 3), np.uint8)
    masks = np.zeros((num_frames, h, w), np.uint8)
    hits: list[list[tuple[int, list[int]]]] = [[] for _ in actors]  # (frame, box) per actor
    pixels = h * w * 3
    chunk = max(1, (1 << 21) // (h * w))  # frames painted at once (bounded memory)
    for t0 in range(0, num_frames, chunk):
        ts = range(t0, min(t0 + chunk, num_frames))
        imgs = np.repeat(scene.image[None], len(ts), axis=0)  # [t, H, W, 3]
        items = []
        for t in ts:
            depth = [
                (a.anomalous, float(a.anchor[t, 1]) if a.parts[t] else 0.0, i)
                for i, a in enumerate(actors)
            ]
            items.append(
                [
                    (i + 1, part, colour, alpha)
                    for _, _, i in sorted(depth)
                    for part, colour, alpha in actors[i].parts[t]
                ]
            )
        paint_frames(imgs, masks[t0 : ts.stop], items)
        _record_boxes(masks[t0 : ts.stop], t0, hits)
        # uniform camera noise with std sigma (uniform bytes: std 255/sqrt(12); fast to draw).
        # One draw for the chunk is the same byte stream as one per frame when a frame's bytes
        # are whole 32-bit words (numpy draws bytes as uint32 words and drops the tail).
        if pixels % 4 == 0:
            raw = rng.bytes(pixels * len(ts))
        else:
            raw = b"".join(rng.bytes(pixels) for _ in ts)
        noise = np.frombuffer(raw, np.uint8).reshape(len(ts), h, w, 3)
        noise = (noise.astype(np.float32) - 127.5) * (light["sigma"] * np.float32(12**0.5 / 255))
        imgs = imgs * light["gain"][ts][:, None, None, None] + light["tint"][ts][:, None, None]
        imgs += noise
        frames[t0 : ts.stop] = np.clip(np.rint(imgs), 0, 255).astype(np.uint8)

    lut = np.zeros(256, np.uint8)
    tracks: list[Track] = []
    kept: list[int] = []
    for i, actor in enumerate(actors):
        if not hits[i]:
            continue
        lut[i + 1] = len(tracks) + 1
        kept.append(i)
        tracks.append(
            Track(
                track_id=len(tracks),
                kind=actor.kind,
                frames=np.array([f for f, _ in hits[i]], np.int32),
                boxes=np.array([b for _, b in hits[i]], np.int32).reshape(-1, 4),
                anomalous=actor.anomalous,
            )
        )
    return frames, lut[masks], tracks, kept


def _record_boxes(masks: np.ndarray, t0: int, hits: list[list[tuple[int, list[int]]]]) -> None:
    """Append to ``hits[i]`` the frame and bounding box ``[x0, y0, x1, y1]`` of actor ``i``'s
    mask pixels (id ``i + 1``) in each of ``masks`` (uint8 [t, H, W]; frame ``t0 + k``)."""
    h, w = masks.shape[1:]
    for value in (np.flatnonzero(np.bincount(masks.ravel(), minlength=1)[1:]) + 1).tolist():
        own = masks == value  # [t, H, W]
        rows, cols = own.any(2), own.any(1)  # [t, H], [t, W]
        top, left = rows.argmax(1), cols.argmax(1)
        bottom, right = h - 1 - rows[:, ::-1].argmax(1), w - 1 - cols[:, ::-1].argmax(1)
        for k in np.flatnonzero(rows.any(1)).tolist():
            hits[value - 1].append(
                (t0 + k, [int(left[k]), int(top[k]), int(right[k]), int(bottom[k])])
            )


def _intervals(labels: np.ndarray, fps: float) -> np.ndarray:
    """float32 [K, 2] half-open second intervals ``[first/fps, (last+1)/fps)`` of label runs."""
    return (label_runs(labels) / fps).astype(np.float32).reshape(-1, 2)


def _centre_word(boxes: np.ndarray, width: int, height: int) -> str:
    cx = (boxes[:, 0] + boxes[:, 2]).mean() / 2 + 0.5
    cy = (boxes[:, 1] + boxes[:, 3]).mean() / 2 + 0.5
    return text.spatial_word(cx, cy, width, height)


def _fields(
    anomaly_type: str,
    infos: list[dict],
    tracks: list[Track],
    labels: np.ndarray,
    width: int,
    height: int,
) -> dict[str, str]:
    """Template fields: appearance, spatial word and trajectory of the anomaly.

    ``infos[i]`` holds the words of ``tracks[i]`` (colour, size, path, ...).
    """
    if anomaly_type == NORMAL:
        return text.normal_fields(
            [inf["colour"] for inf, tr in zip(infos, tracks) if tr.kind == "person"]
        )
    # anomalous tracks seen on labelled frames, with their boxes there
    shown = [
        (inf, tr.boxes[labels[tr.frames] == 1])
        for inf, tr in zip(infos, tracks)
        if tr.anomalous and (labels[tr.frames] == 1).any()
    ]
    fields = {k: str(v) for k, v in shown[0][0].items()}
    fields["colour2"] = shown[1][0]["colour"] if len(shown) > 1 else fields.get("owner", "")
    fields["where"] = _centre_word(np.concatenate([b for _, b in shown]), width, height)
    first = shown[0][1]  # [M, 4]
    fields["start"] = _centre_word(first[:1], width, height)
    fields["end"] = _centre_word(first[-1:], width, height)
    fields["trajectory"] = text.trajectory(fields["start"], fields["end"])
    fields["place"] = text.FIRE_PLACES.get(fields.get("where_kind", ""), "")
    fields["again"] = text.AGAIN if anomaly_type == "explosion" and len(shown) > 1 else ""
    return fields


def _captions(
    anomaly_type: str, tracks: list[Track], labels: np.ndarray, width: int, height: int
) -> list[str]:
    """Per-frame captions: the anomaly where the frame is labelled, else people walking."""
    num_frames = len(labels)
    people = np.zeros(num_frames, np.int32)
    boxes_at: list[list[np.ndarray]] = [[] for _ in range(num_frames)]
    for tr in tracks:
        if tr.kind == "person":
            people[tr.frames] += 1
        if tr.anomalous:
            for f, b in zip(tr.frames, tr.boxes):
                boxes_at[f].append(b)
    out = []
    for t in range(num_frames):
        if labels[t]:
            where = _centre_word(np.stack(boxes_at[t]), width, height)
            out.append(text.frame_caption(anomaly_type, where, 0))
        else:
            out.append(text.frame_caption(None, "", int(people[t])))
    return out
