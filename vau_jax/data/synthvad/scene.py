"""The static scene: textured ground, paved paths, buildings and trees (rendered once per video)."""

from __future__ import annotations

import dataclasses

import numpy as np

from vau_jax.data.synthvad.draw import paint

# (name, RGB) palettes; names feed the template descriptions.
GROUNDS = (
    ("green grass", (70, 120, 60)),
    ("dry grass", (135, 130, 75)),
    ("bare earth", (115, 95, 70)),
    ("dark asphalt", (70, 72, 78)),
)
PAVINGS = (
    ("grey paving", (165, 165, 160)),
    ("sandy gravel", (195, 180, 145)),
    ("pale concrete", (200, 200, 195)),
)
# The "shifted" domain (cross-domain tests): winter / night / industrial looks.
SHIFTED_GROUNDS = (
    ("snow", (225, 228, 235)),
    ("red clay", (150, 80, 60)),
    ("wet asphalt", (40, 42, 50)),
    ("sand", (210, 190, 140)),
)
SHIFTED_PAVINGS = (
    ("dark slate", (70, 75, 85)),
    ("red brick paving", (160, 85, 70)),
    ("yellow tiles", (205, 185, 90)),
)
SHIFTED_WALLS = (
    ("black", (40, 40, 45)),
    ("green", (70, 130, 80)),
    ("orange", (210, 120, 50)),
    ("purple", (120, 80, 140)),
    ("teal", (60, 140, 140)),
)
WALLS = (
    ("red brick", (150, 70, 55)),
    ("beige", (190, 170, 130)),
    ("grey", (120, 120, 125)),
    ("white", (215, 215, 210)),
    ("blue", (80, 100, 150)),
)


@dataclasses.dataclass
class Path:
    """A straight paved path crossing the frame (endpoints lie outside the frame).

    Attributes:
      p0, p1: float [2] endpoints (x, y) in pixels.
      width: path width in pixels.
      orientation: "horizontal" | "vertical" | "diagonal".
    """

    p0: np.ndarray
    p1: np.ndarray
    width: float
    orientation: str

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.p1 - self.p0))

    @property
    def direction(self) -> np.ndarray:
        """Unit vector from ``p0`` to ``p1``."""
        return (self.p1 - self.p0) / self.length

    def point(self, s: np.ndarray, offset: np.ndarray | float = 0.0) -> np.ndarray:
        """Points at arc length ``s`` (pixels from p0) and lateral ``offset``: float [..., 2]."""
        d = self.direction
        n = np.array([-d[1], d[0]])
        s = np.asarray(s, np.float64)[..., None]
        return self.p0 + s * d + np.asarray(offset, np.float64)[..., None] * n

    def entry_exit(self, height: int, width: int) -> tuple[float, float]:
        """Arc lengths where the centreline enters and leaves the frame."""
        s = np.linspace(0.0, self.length, 512)
        xy = self.point(s)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
        idx = np.flatnonzero(inside)
        return float(s[idx[0]]), float(s[idx[-1]])


@dataclasses.dataclass
class Building:
    """An axis-aligned building: inclusive pixel box and wall colour name."""

    box: tuple[int, int, int, int]
    colour: str


@dataclasses.dataclass
class Scene:
    """Everything static about one video.

    Attributes:
      image: float32 [H, W, 3] background in [0, 255].
      paths: the walkable paths.
      path_mask: bool [H, W] pixels on any path.
      buildings: the buildings.
      num_trees: number of trees.
      ground, paving: palette names used in descriptions.
    """

    image: np.ndarray
    paths: list[Path]
    path_mask: np.ndarray
    buildings: list[Building]
    num_trees: int
    ground: str
    paving: str


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled uniform noise in [-1, 1]: float32 [H, W]."""
    grid = rng.uniform(-1.0, 1.0, size=(cells + 1, cells + 1)).astype(np.float32)
    ys = np.linspace(0.0, cells, height, endpoint=False, dtype=np.float32)
    xs = np.linspace(0.0, cells, width, endpoint=False, dtype=np.float32)
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx  # [H, W]
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def _make_paths(rng: np.random.Generator, height: int, width: int) -> list[Path]:
    size = min(height, width)
    m = 0.2 * size  # endpoints beyond the border so walkers enter from outside
    paths = []
    y0 = rng.uniform(0.35, 0.75) * height
    y1 = np.clip(y0 + rng.uniform(-0.1, 0.1) * height, 0.3 * height, 0.8 * height)
    paths.append(
        Path(
            np.array([-m, y0]),
            np.array([width + m, y1]),
            rng.uniform(0.12, 0.16) * size,
            "horizontal",
        )
    )
    second = rng.choice(["vertical", "diagonal"])
    if second == "vertical":
        x0 = rng.uniform(0.25, 0.75) * width
        x1 = np.clip(x0 + rng.uniform(-0.1, 0.1) * width, 0.2 * width, 0.8 * width)
        p0, p1 = np.array([x0, -m]), np.array([x1, height + m])
    else:
        ya, yb = rng.uniform(0.0, 0.25) * height, rng.uniform(0.75, 1.0) * height
        if rng.uniform() < 0.5:
            ya, yb = yb, ya
        p0, p1 = np.array([-m, ya]), np.array([width + m, yb])
    paths.append(Path(p0, p1, rng.uniform(0.11, 0.15) * size, str(second)))
    return paths


def _path_mask(paths: list[Path], height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = np.zeros((height, width), bool)
    for p in paths:
        d = p.direction
        rel_x, rel_y = xx - p.p0[0], yy - p.p0[1]
        dist = np.abs(rel_x * -d[1] + rel_y * d[0])  # distance to the centreline
        mask |= dist <= p.width / 2
    return mask


def make_scene(rng: np.random.Generator, height: int, width: int, domain: str = "default") -> Scene:
    """Draw a random static scene (all randomness from ``rng``; ``domain="shifted"`` uses
    the shifted palettes and a stronger texture, with the same random draws)."""
    size = min(height, width)
    shifted = domain == "shifted"
    grounds, pavings = (SHIFTED_GROUNDS, SHIFTED_PAVINGS) if shifted else (GROUNDS, PAVINGS)
    gname, gcol = grounds[rng.integers(len(grounds))]
    pname, pcol = pavings[rng.integers(len(pavings))]
    paths = _make_paths(rng, height, width)
    on_path = _path_mask(paths, height, width)

    texture = 14.0 * smooth_noise(rng, height, width, 6) + 5.0 * smooth_noise(
        rng, height, width, max(size // 4, 8)
    )  # [H, W]
    if shifted:
        texture = 1.8 * texture
    image = np.where(on_path[..., None], np.float32(pcol), np.float32(gcol))
    image = image + np.where(on_path, 0.4, 1.0)[..., None] * texture[..., None]
    image = image.astype(np.float32)

    occupied = on_path.copy()
    buildings: list[Building] = []
    num_buildings = int(rng.integers(1, 4))
    for _ in range(40):
        if len(buildings) >= num_buildings:
            break
        bw = int(rng.uniform(0.16, 0.3) * width)
        bh = int(rng.uniform(0.14, 0.26) * height)
        x0 = int(rng.integers(0, width - bw))
        y0 = int(rng.integers(0, height - bh))
        pad = max(1, size // 32)
        ys, xs = slice(max(y0 - pad, 0), y0 + bh + pad), slice(max(x0 - pad, 0), x0 + bw + pad)
        if occupied[ys, xs].any():
            continue
        occupied[ys, xs] = True
        walls = SHIFTED_WALLS if shifted else WALLS
        wname, wcol = walls[rng.integers(len(walls))]
        _draw_building(image, (x0, y0, x0 + bw - 1, y0 + bh - 1), np.float32(wcol), size)
        buildings.append(Building((x0, y0, x0 + bw - 1, y0 + bh - 1), wname))

    num_trees = 0
    for _ in range(int(rng.integers(0, 4))):
        r = rng.uniform(0.04, 0.07) * size
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        ys = slice(int(max(cy - r - 1, 0)), int(cy + r + 2))
        xs = slice(int(max(cx - r - 1, 0)), int(cx + r + 2))
        if occupied[ys, xs].any():
            continue
        occupied[ys, xs] = True
        paint(
            image,
            None,
            0,
            ("ellipse", cx + 0.3 * r, cy + 0.3 * r, r, r, 0.0),
            np.float32((40, 50, 35)),
        )  # shadow
        paint(
            image,
            None,
            0,
            ("ellipse", cx, cy, r, r, 0.0),
            np.float32((35, 95, 40)) + rng.uniform(-10, 10, 3).astype(np.float32),
        )
        num_trees += 1
    return Scene(image, paths, on_path, buildings, num_trees, gname, pname)


def _draw_building(
    image: np.ndarray, box: tuple[int, int, int, int], wall: np.ndarray, size: int
) -> None:
    """Walls, a darker roof edge, a shadow and a grid of windows, in place."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    sh = max(1, size // 40)
    image[min(y0 + sh, h - 1) : min(y1 + sh + 1, h), min(x1 + 1, w - 1) : min(x1 + sh + 1, w)] *= (
        0.6
    )
    image[min(y1 + 1, h - 1) : min(y1 + sh + 1, h), min(x0 + sh, w - 1) : min(x1 + sh + 1, w)] *= (
        0.6
    )
    image[y0 : y1 + 1, x0 : x1 + 1] = wall
    roof = max(1, (y1 - y0) // 5)
    image[y0 : y0 + roof, x0 : x1 + 1] = wall * 0.6
    win = max(1, size // 32)
    step = 3 * win
    for wy in range(y0 + roof + win, y1 - win, step):
        for wx in range(x0 + win, x1 - win, step):
            image[wy : wy + win + 1, wx : wx + win + 1] = (40, 50, 70)
