"""A long SynthVAD stream, one camera: for trying ``--stream`` and for ``bench/stream.py``.

    truth = write_stream("cam.ts", seconds=3600, config=SynthConfig())

Consecutive SynthVAD videos of one split (their walkers, events and light) are filmed in
one static scene (the first video's), encoded as H.264 in MPEG-TS (or Matroska) and appended to the file
segment by segment (flushed after each, so a reader can follow it while it grows;
``pace`` > 0 writes at that many times real time). Returns the anomalies' true intervals in
stream seconds.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def write_stream(
    path: str,
    seconds: float,
    config: Any = None,
    split: str = "test",
    pace: float = 0.0,
    first: int = 0,
    container: str = "mpegts",
    cuts: list[float] | None = None,
) -> list[tuple[float, float]]:
    """Writes at least ``seconds`` of stream to ``path`` (module docstring).

    Args:
      path: the ``.ts`` / ``.mkv`` file (created or truncated).
      seconds: stream length; whole videos are written until it is reached.
      config: the :class:`~vau_jax.data.synthvad.SynthConfig` (default: its defaults).
      split: the SynthVAD split whose videos are filmed (``test``: what the runs never saw).
      pace: > 0 sleeps so the file grows at ``pace`` times real time.
      first: index of the first video of ``split``.
      container: ``"mpegts"`` (``.ts``) or ``"matroska"`` (``.mkv``).
      cuts: when given, receives the stream time at which each video after the first
        starts (its walkers appear and the previous ones vanish there: a cut, not a scene).
    Returns:
      the anomalous intervals ``[(start, end), ...]`` in stream seconds (half-open).
    """
    import av

    from vau_jax.data.synthvad import SynthConfig, anomaly_type_at, render_video, split_seeds
    from vau_jax.data.synthvad.scene import make_scene

    config = SynthConfig() if config is None else config
    h, w, fps = int(config.height), int(config.width), float(config.fps)
    scene_rng = np.random.default_rng(split_seeds(split, first + 1)[first])
    scene = make_scene(scene_rng, h, w, config.domain)
    truth: list[tuple[float, float]] = []
    t = 0.0
    with open(path, "wb") as f:
        out = av.open(f, mode="w", format=container)
        st = out.add_stream("libx264", rate=int(round(fps)))
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"tune": "zerolatency", "preset": "ultrafast", "crf": "18"}
        i = first
        while t < seconds:
            seed = split_seeds(split, i + 1)[i]
            v = render_video(seed, config, anomaly_type_at(i, config), scene=scene)
            truth += [(t + float(a), t + float(b)) for a, b in np.asarray(v.intervals).tolist()]
            if cuts is not None and i > first:
                cuts.append(t)
            start = time.perf_counter()
            for frame in v.frames:
                for packet in st.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    out.mux(packet)
            f.flush()
            length = len(v.frames) / fps
            t += length
            i += 1
            if pace > 0:
                time.sleep(max(0.0, length / pace - (time.perf_counter() - start)))
        for packet in st.encode():
            out.mux(packet)
        out.close()
    return truth
