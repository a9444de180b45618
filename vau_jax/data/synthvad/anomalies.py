"""Who is in the video: normal walkers, and one builder per anomaly type.

Each anomaly builder returns the actors it adds and a boolean anomaly *window* [T]; the
renderer labels a frame anomalous where the window is on and an anomalous actor is visible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from vau_jax.data.synthvad import actors as A
from vau_jax.data.synthvad.scene import Scene


@dataclasses.dataclass
class Context:
    """What every builder needs. Lengths in pixels, times in seconds, ``T`` frames."""

    rng: np.random.Generator
    scene: Scene
    num_frames: int
    fps: float
    height: int
    width: int
    shirts: list[int]  # unused shirt palette indices, consumed front to back
    actor_scale: float = 1.0  # people's size and walking speed (the "shifted" domain: 1.3)

    @property
    def size(self) -> float:
        return float(min(self.height, self.width))

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def person_height(self) -> float:
        return 0.17 * self.size * self.actor_scale

    def walk_speed(self) -> float:
        return float(self.rng.uniform(0.08, 0.12) * self.size * self.actor_scale)

    def look(self) -> A.PersonLook:
        """A new person, in a shirt colour not used yet (until the palette runs out)."""
        if not self.shirts:
            self.shirts.extend(int(i) for i in self.rng.permutation(len(A.SHIRTS)))
        return A.random_look(self.rng, self.shirts.pop(0), self.person_height)

    def frame_at(self, seconds: float) -> int:
        return int(np.clip(round(seconds * self.fps), 0, self.num_frames - 1))


@dataclasses.dataclass
class Anomaly:
    """The actors an anomaly adds and its window: bool [T]."""

    actors: list[A.Actor]
    window: np.ndarray


def person_actor(
    look: A.PersonLook,
    feet: np.ndarray,
    present: np.ndarray,
    theta: np.ndarray,
    stride: np.ndarray,
    punch: np.ndarray | None = None,
    carrying: np.ndarray | None = None,
    anomalous: bool = False,
    info: dict | None = None,
) -> A.Actor:
    """A person from per-frame arrays: feet float [T, 2], present bool [T], theta/stride [T]."""
    t_len = len(feet)
    step = np.r_[0.0, np.linalg.norm(np.diff(feet, axis=0), axis=1)]
    phase = 2 * np.pi * np.cumsum(step) / (0.9 * look.height)  # one gait cycle per 0.9 height
    punch = np.zeros(t_len) if punch is None else punch
    carrying = np.zeros(t_len, bool) if carrying is None else carrying
    parts = [
        A.person_parts(look, *feet[t], theta[t], phase[t], stride[t], punch[t], carrying[t])
        if present[t]
        else []
        for t in range(t_len)
    ]
    anchor = np.where(present[:, None], feet - [0.0, 0.5 * look.height], np.nan)
    base = {"colour": look.shirt, "kind": "person"}
    return A.Actor("person", anomalous, parts, anchor, {**base, **(info or {})})


def _walk(
    ctx: Context, path, s_mid: float, t_mid: float, direction: float, speed: float, offset: float
) -> np.ndarray:
    """Feet float [T, 2] of a walk that passes arc length ``s_mid`` at ``t_mid`` seconds."""
    t = np.arange(ctx.num_frames) / ctx.fps
    return path.point(s_mid + direction * speed * (t - t_mid), offset)


def _central_s(ctx: Context, path, lo: float = 0.25, hi: float = 0.75) -> float:
    s_in, s_out = path.entry_exit(ctx.height, ctx.width)
    return float(s_in + ctx.rng.uniform(lo, hi) * (s_out - s_in))


def normal_walkers(ctx: Context, count: int) -> list[A.Actor]:
    """``count`` people walking along random paths at walking speed (some carry a bag)."""
    out = []
    t_len = ctx.num_frames
    for _ in range(count):
        path = ctx.scene.paths[ctx.rng.integers(len(ctx.scene.paths))]
        direction = float(ctx.rng.choice([-1.0, 1.0]))
        offset = ctx.rng.uniform(-0.3, 0.3) * path.width
        feet = _walk(
            ctx,
            path,
            _central_s(ctx, path, 0.0, 1.0),
            ctx.rng.uniform(0, ctx.duration),
            direction,
            ctx.walk_speed(),
            offset,
        )
        look = ctx.look()
        carrying = None
        if ctx.rng.uniform() < 0.3:
            name, rgb = A.BAGS[ctx.rng.integers(len(A.BAGS))]
            look.bag = (name, np.float32(rgb))
            carrying = np.ones(t_len, bool)
        out.append(
            person_actor(
                look, feet, np.ones(t_len, bool), np.zeros(t_len), np.ones(t_len), carrying=carrying
            )
        )
    return out


def _lean(path, direction: float) -> float:
    dx = path.direction[0] * direction
    return 0.25 * float(np.sign(dx)) if abs(dx) > 0.3 else 0.0


def running(ctx: Context) -> Anomaly:
    """A person runs across the frame along a path, 3-5x walking speed."""
    path = ctx.scene.paths[ctx.rng.integers(len(ctx.scene.paths))]
    direction = float(ctx.rng.choice([-1.0, 1.0]))
    s_in, s_out = path.entry_exit(ctx.height, ctx.width)
    start = (s_in - ctx.person_height) if direction > 0 else (s_out + ctx.person_height)
    t0 = ctx.rng.uniform(0.15, 0.5) * ctx.duration
    speed = ctx.rng.uniform(0.35, 0.5) * ctx.size
    feet = _walk(ctx, path, start, t0, direction, speed, ctx.rng.uniform(-0.2, 0.2) * path.width)
    present = np.arange(ctx.num_frames) >= ctx.frame_at(t0)
    t_len = ctx.num_frames
    actor = person_actor(
        ctx.look(),
        feet,
        present,
        np.full(t_len, _lean(path, direction)),
        np.full(t_len, 1.7),
        anomalous=True,
        info={"path": path.orientation},
    )
    return Anomaly([actor], present.copy())


def fighting(ctx: Context) -> Anomaly:
    """Two people meet on a path and scuffle (jittering, punching), then walk apart."""
    rng, t_len = ctx.rng, ctx.num_frames
    path = ctx.scene.paths[rng.integers(len(ctx.scene.paths))]
    s_m = _central_s(ctx, path, 0.3, 0.7)
    gap = 0.35 * ctx.person_height
    t0 = rng.uniform(0.25, 0.5) * ctx.duration
    t1 = t0 + rng.uniform(2.0, 4.0)
    speed = ctx.walk_speed()
    t = np.arange(t_len) / ctx.fps
    fight = (t >= t0) & (t < t1)
    actors = []
    for side in (-1.0, 1.0):
        # approach before t0, jitter in place during the fight, walk back after t1
        s = s_m + side * gap / 2 + side * speed * np.maximum(t0 - t, 0.0)
        s = s + side * speed * np.maximum(t - t1, 0.0)
        s = s + fight * rng.uniform(-0.15, 0.15, t_len) * ctx.person_height
        offset = rng.uniform(-0.05, 0.05) + fight * rng.uniform(-0.08, 0.08, t_len)
        feet = path.point(s, offset * ctx.person_height)
        towards = -side * float(np.sign(path.direction[0]) or 1.0)
        punch = fight * towards * rng.uniform(0.4, 1.3, t_len)
        theta = fight * rng.uniform(-0.3, 0.3, t_len)
        stride = np.where(fight, 0.6, 1.0)
        actors.append(
            person_actor(
                ctx.look(),
                feet,
                np.ones(t_len, bool),
                theta,
                stride,
                punch=punch,
                anomalous=True,
                info={"path": path.orientation},
            )
        )
    return Anomaly(actors, fight)


def falling(ctx: Context) -> Anomaly:
    """A walker falls over (rotates to lying within ~0.5 s) and stays on the ground."""
    rng, t_len = ctx.rng, ctx.num_frames
    path = ctx.scene.paths[rng.integers(len(ctx.scene.paths))]
    direction = float(rng.choice([-1.0, 1.0]))
    s_f = _central_s(ctx, path)
    t_f = rng.uniform(0.3, 0.6) * ctx.duration
    t = np.arange(t_len) / ctx.fps
    feet = _walk(
        ctx, path, s_f, t_f, direction, ctx.walk_speed(), rng.uniform(-0.2, 0.2) * path.width
    )
    fallen = t >= t_f
    feet[fallen] = feet[ctx.frame_at(t_f)]
    side = _lean(path, direction) or float(rng.choice([-0.25, 0.25]))
    theta = np.sign(side) * np.pi / 2 * np.clip((t - t_f) / rng.uniform(0.4, 0.6), 0.0, 1.0)
    stride = np.where(fallen, 0.0, 1.0)
    actor = person_actor(
        ctx.look(),
        feet,
        np.ones(t_len, bool),
        theta,
        stride,
        anomalous=True,
        info={"path": path.orientation},
    )
    return Anomaly([actor], fallen)


def _blast(ctx: Context, t0: float) -> tuple[A.Actor, np.ndarray, float]:
    """One explosion starting at ``t0`` s: (actor, window bool [T], duration in s)."""
    rng, t_len = ctx.rng, ctx.num_frames
    x, y = rng.uniform(0.2, 0.8) * ctx.width, rng.uniform(0.3, 0.8) * ctx.height
    radius = rng.uniform(0.1, 0.17) * ctx.size
    dur = rng.uniform(1.5, 2.5)
    n = int(rng.integers(8, 15))
    ang = rng.uniform(0, 2 * np.pi, n)
    vel = rng.uniform(1.0, 2.2, n)[:, None] * radius * np.stack([np.cos(ang), np.sin(ang)], 1)
    debris = A.Debris(vel, max(0.012 * ctx.size, 0.6), 2.0 * radius)
    t = np.arange(t_len) / ctx.fps
    window = (t >= t0) & (t < t0 + dur)
    parts = [
        A.explosion_parts(x, y, radius, t[k] - t0, dur, debris) if window[k] else []
        for k in range(t_len)
    ]
    anchor = np.where(window[:, None], [x, y], np.nan)
    size = "large" if radius > 0.14 * ctx.size else "small"
    info = {"kind": "explosion", "colour": "bright yellow", "size": size}
    return A.Actor("explosion", True, parts, anchor, info), window, dur


def explosion(ctx: Context) -> Anomaly:
    """An expanding bright flash with flying debris and smoke, 1.5-2.5 s.

    About a third of the time a second blast follows 1-3 s later elsewhere (when it fits), so
    such videos have two anomalous intervals.
    """
    first, window, dur = _blast(ctx, ctx.rng.uniform(0.25, 0.6) * ctx.duration)
    actors = [first]
    t1 = float(np.flatnonzero(window)[0]) / ctx.fps + dur + ctx.rng.uniform(1.0, 3.0)
    if ctx.rng.uniform() < 0.35 and t1 + 1.5 < ctx.duration:
        second, window2, _ = _blast(ctx, t1)
        actors.append(second)
        window = window | window2
    return Anomaly(actors, window)


def fire(ctx: Context) -> Anomaly:
    """A flickering, growing fire at the foot of a building (or on open ground)."""
    rng, t_len = ctx.rng, ctx.num_frames
    base = rng.uniform(0.08, 0.15) * ctx.size
    tall = rng.uniform(0.14, 0.22) * ctx.size
    if ctx.scene.buildings and rng.uniform() < 0.7:
        x0, _, x1, y1 = ctx.scene.buildings[rng.integers(len(ctx.scene.buildings))].box
        x, y = rng.uniform(x0, x1 + 1), min(y1 + 1.0, ctx.height - 1.0)
        where = "building"
    else:
        x, y = rng.uniform(0.15, 0.85) * ctx.width, rng.uniform(0.3, 0.9) * ctx.height
        where = "ground"
    t0 = rng.uniform(0.2, 0.5) * ctx.duration
    t = np.arange(t_len) / ctx.fps
    window = t >= t0
    growth = np.clip(0.35 + 0.65 * (t - t0) / 3.0, 0.35, 1.0)
    parts = [
        A.fire_parts(rng, x, y, base, tall, growth[k]) if window[k] else [] for k in range(t_len)
    ]
    anchor = np.where(window[:, None], [x, y - 0.4 * tall], np.nan)
    info = {
        "kind": "fire",
        "colour": "orange",
        "where_kind": where,
        "size": "large" if base > 0.12 * ctx.size else "small",
    }
    return Anomaly([A.Actor("fire", True, parts, anchor, info)], window)


def vehicle(ctx: Context) -> Anomaly:
    """A car drives along a footpath at 3-5x walking speed."""
    rng, t_len = ctx.rng, ctx.num_frames
    path = ctx.scene.paths[rng.integers(len(ctx.scene.paths))]
    direction = float(rng.choice([-1.0, 1.0]))
    length, width = rng.uniform(0.24, 0.3) * ctx.size, rng.uniform(0.12, 0.14) * ctx.size
    s_in, s_out = path.entry_exit(ctx.height, ctx.width)
    start = (s_in - length) if direction > 0 else (s_out + length)
    t0 = rng.uniform(0.15, 0.5) * ctx.duration
    centre = _walk(ctx, path, start, t0, direction, rng.uniform(0.3, 0.5) * ctx.size, 0.0)
    d = path.direction * direction
    angle = float(np.arctan2(d[1], d[0]))
    present = np.arange(t_len) >= ctx.frame_at(t0)
    name, rgb = A.CARS[rng.integers(len(A.CARS))]
    colour = np.float32(rgb)
    parts = [
        A.vehicle_parts(colour, *centre[k], angle, length, width) if present[k] else []
        for k in range(t_len)
    ]
    anchor = np.where(present[:, None], centre, np.nan)
    info = {"kind": "vehicle", "colour": name, "path": path.orientation}
    return Anomaly([A.Actor("vehicle", True, parts, anchor, info)], present.copy())


def abandoned_object(ctx: Context) -> Anomaly:
    """A walker drops a bag on the path and walks on; the bag stays."""
    rng, t_len = ctx.rng, ctx.num_frames
    path = ctx.scene.paths[rng.integers(len(ctx.scene.paths))]
    direction = float(rng.choice([-1.0, 1.0]))
    t_d = rng.uniform(0.3, 0.55) * ctx.duration
    feet = _walk(
        ctx,
        path,
        _central_s(ctx, path),
        t_d,
        direction,
        ctx.walk_speed(),
        rng.uniform(-0.2, 0.2) * path.width,
    )
    look = ctx.look()
    name, rgb = A.BAGS[rng.integers(len(A.BAGS))]
    look.bag = (name, np.float32(rgb))
    dropped = np.arange(t_len) >= ctx.frame_at(t_d)
    walker = person_actor(
        look, feet, np.ones(t_len, bool), np.zeros(t_len), np.ones(t_len), carrying=~dropped
    )
    size = rng.uniform(0.07, 0.1) * ctx.size  # larger than a carried bag (~0.035 size)
    bx, by = feet[ctx.frame_at(t_d)] + [rng.uniform(-0.2, 0.2) * size, 0.0]
    parts = [A.bag_parts(look.bag[1], bx, by, size) if dropped[k] else [] for k in range(t_len)]
    anchor = np.where(dropped[:, None], [bx, by - 0.4 * size], np.nan)
    info = {
        "kind": "object",
        "colour": name,
        "owner": look.shirt,
        "path": path.orientation,
        "size": "large" if size > 0.085 * ctx.size else "small",
    }
    return Anomaly([walker, A.Actor("object", True, parts, anchor, info)], dropped)


BUILDERS: dict[str, Callable[[Context], Anomaly]] = {
    "running": running,
    "fighting": fighting,
    "falling": falling,
    "explosion": explosion,
    "fire": fire,
    "vehicle": vehicle,
    "abandoned_object": abandoned_object,
}
