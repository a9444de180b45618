"""Streaming: following a growing file or a pipe, alerts, calibration, latency, the CLI."""

from __future__ import annotations

import io
import json
import os
import threading
import time

import jax
import numpy as np
import pytest

from vau_jax import explain as E
from vau_jax import stream as S
from vau_jax.data.synthvad import SynthConfig
from vau_jax.data.video import VideoDecodeError, iter_frames
from vau_jax.stream.events import (
    EventTracker,
    alert_latencies,
    calibrate_threshold,
    false_alarm_rate,
    starts,
)
from vau_jax.stream.source import GrowingFile, PipeReader
from vau_jax.stream.synthetic import write_stream

SMALL = SynthConfig(height=64, width=64, fps=8.0)


def _all_frames(windows) -> tuple[np.ndarray, list[float]]:
    ws = list(windows)
    return np.concatenate([w.frames for w in ws]), [w.start_s for w in ws]


@pytest.mark.parametrize("ext,container", [(".ts", "mpegts"), (".mkv", "matroska")])
def test_a_growing_file_is_followed_to_its_end(tmp_path, ext, container):
    path = str(tmp_path / f"cam{ext}")
    open(path, "wb").close()
    truth: list = []
    # ~40 s of stream written at 40x real time while it is read: the reader reaches the
    # end of the file many times and must wait, not stop.
    writer = threading.Thread(
        target=lambda: truth.extend(write_stream(path, 40, SMALL, pace=40, container=container))
    )
    writer.start()
    name, f = S.open_source(path, idle_seconds=1.5)
    got, starts_s = _all_frames(S.iter_windows(name, f, 8.0, 64, 1.0))
    writer.join()
    assert f.waited_seconds > 0.5  # it did catch up with the writer
    f.close()
    ref = np.concatenate([c.frames for c in iter_frames(path, fps=8.0, size=64)])
    assert got.shape == ref.shape and len(got) >= 40 * 8
    np.testing.assert_array_equal(got, ref)  # the same decode as the finished file
    np.testing.assert_allclose(starts_s, np.arange(len(starts_s)) * 1.0, atol=1e-9)


def test_a_pipe_is_read_to_its_end(tmp_path):
    path = str(tmp_path / "cam.ts")
    write_stream(path, 12, SMALL)
    data = open(path, "rb").read()
    r, w = os.pipe()

    def feed():
        with os.fdopen(w, "wb") as out:
            for s in range(0, len(data), 4096):
                out.write(data[s : s + 4096])
                out.flush()
                time.sleep(0.001)

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb") as pipe:
        got, _ = _all_frames(S.iter_windows("<stdin>", PipeReader(pipe), 8.0, 64, 0.5))
    t.join()
    ref = np.concatenate([c.frames for c in iter_frames(path, fps=8.0, size=64)])
    np.testing.assert_array_equal(got, ref)


def test_growing_file_waits_then_ends_after_idle_seconds(tmp_path):
    path = str(tmp_path / "x.ts")
    with open(path, "wb") as f:
        f.write(b"abc")
    now = [0.0]
    f = GrowingFile(path, idle_seconds=2.0, poll_seconds=0.5, clock=lambda: now[0])
    f._sleep = lambda s: now.__setitem__(0, now[0] + s)  # a fake clock, no real sleeping
    assert f.read(10) == b"abc"
    assert f.read(10) == b"" and now[0] == pytest.approx(2.0)  # waited idle_seconds
    assert f.read(10) == b""  # and stays ended
    assert f.waited_seconds == pytest.approx(2.0)
    f.close()


def test_unfollowable_or_bad_streams_are_refused(tmp_path):
    with pytest.raises(VideoDecodeError, match="mp4 cannot be read before it is closed"):
        S.open_source(str(tmp_path / "cam.mp4"))
    with pytest.raises(VideoDecodeError, match="no such file"):
        S.open_source(str(tmp_path / "missing.ts"))
    junk = tmp_path / "junk.ts"
    junk.write_bytes(np.random.default_rng(0).bytes(50_000))
    name, f = S.open_source(str(junk), idle_seconds=0.2)
    with pytest.raises(VideoDecodeError, match="junk.ts"):
        list(S.iter_windows(name, f, 8.0, 64, 1.0))
    f.close()
    with pytest.raises(VideoDecodeError, match="<stdin>"):
        list(S.iter_windows("<stdin>", PipeReader(io.BytesIO(b"")), 8.0, 64, 1.0))


# ------------------------------------------------------------------------------ events


def test_event_tracker_marks_crossings():
    t = EventTracker(0.5)
    events = [t.update(p) for p in (0.1, 0.5, 0.9, 0.49, 0.2, 0.7, 0.7)]
    assert events == [None, "start", None, "end", None, "start", None]
    assert list(starts([0.1, 0.5, 0.9, 0.49, 0.2, 0.7, 0.7], 0.5)) == [1, 5]


def test_calibration_picks_the_lowest_threshold_meeting_the_rate():
    rng = np.random.default_rng(0)
    probs = [rng.uniform(0, 1, 60) for _ in range(6)]
    anomalous = [rng.uniform(0, 1, 60) < 0.2 for _ in range(6)]
    for target in (0.0, 30.0, 200.0, 1e6):
        cal = calibrate_threshold(probs, anomalous, 1.0, target)
        rate, hours = false_alarm_rate(probs, anomalous, 1.0, cal.threshold)
        assert rate <= target and cal.false_alarms_per_hour == pytest.approx(rate)
        assert hours == pytest.approx(sum((~a).sum() for a in anomalous) / 3600)
        # Brute force: every threshold from it upwards meets the target, the next lower
        # distinct probability does not (unless it is the lowest of all).
        allp = np.unique(np.concatenate(probs))
        for t in allp[allp >= cal.threshold]:
            assert false_alarm_rate(probs, anomalous, 1.0, float(t))[0] <= target
        lower = allp[allp < cal.threshold]
        if len(lower):
            assert false_alarm_rate(probs, anomalous, 1.0, float(lower[-1]))[0] > target
    assert calibrate_threshold(probs, anomalous, 1.0, 1e6).threshold == pytest.approx(
        np.concatenate(probs).min()
    )
    with pytest.raises(ValueError, match="normal footage"):
        calibrate_threshold([np.ones(3)], [np.ones(3, bool)], 1.0, 1.0)


def test_alert_latencies():
    truth = [(10.0, 14.0), (30.0, 32.0), (50.0, 51.0), (70.0, 80.0)]
    alerts = [(9.0, 12.0), (31.5, 33.0), (53.0, 54.0), (79.0, 81.0), (95.0, 96.0)]
    delays, missed = alert_latencies(alerts, truth)
    # on at 10 (0); raised 1.5 s after 30; 53 is past 51 + 1 (missed); 79 is 9 s late
    np.testing.assert_allclose(delays, [0.0, 1.5, 9.0])
    assert missed == 1


# --------------------------------------------------------------------------- with runs


def _state_bytes(state) -> int:
    leaves = jax.tree.leaves(
        [state.pending, state.ltc, state.last_frame, getattr(state.background, "_sorted", None)]
    )
    return int(sum(np.asarray(x).nbytes for x in leaves))


@pytest.mark.slow
def test_vadllama_stream_carries_ltc_and_matches_the_whole_video(vadllama_run, tmp_path):
    import vau_jax

    run = vau_jax.load_run(vadllama_run)
    scorer = S.window_scorer(run)
    path = str(tmp_path / "cam.ts")
    truth = write_stream(path, 180, SynthConfig(**dict(run.config.synthvad)))
    frames = np.concatenate([c.frames for c in iter_frames(path, fps=8.0, size=64)])
    f = run.method.frames_per_clip
    whole, _ = run.predict(frames[: len(frames) // f * f], 8.0, None)
    # Windows of whole clips: every score is final, and the LTC lists carried from window
    # to window give the whole video's scores.
    per, got, sizes = 2 * f, [], []
    for s in range(0, len(frames) // f * f, per):
        got.append(scorer(frames[s : s + per]))
        sizes.append(_state_bytes(scorer.state))
    np.testing.assert_allclose(np.concatenate(got), whole["frame_probs"], atol=2e-6)
    assert scorer.state.ltc is not None and scorer.state.clips_done == len(frames) // f
    assert max(sizes[len(sizes) // 3 :]) == min(sizes[len(sizes) // 3 :])  # flat state

    # The CLI over the same file: one line per 1 s window, the schema, alternating events,
    # and the anomalies answered within a few seconds.
    lines = []
    scorer.reset()
    name, fileobj = S.open_source(path, idle_seconds=0.3)
    windows = S.iter_windows(name, fileobj, 8.0, 64, 1.0)
    done = S.follow(windows, scorer, scorer.threshold, lines.append)
    fileobj.close()
    assert done.windows == len(lines) == -(-len(frames) // 8)
    assert all(set(r) == {"t_s", "p", "event", "type"} for r in lines)
    np.testing.assert_allclose([r["t_s"] for r in lines][:-1], np.arange(1, len(lines)))
    ev = [r["event"] for r in lines if r["event"]]
    assert ev == ["start", "end"] * (len(ev) // 2) + ["start"] * (len(ev) % 2)
    # Events are exactly the threshold crossings of the window maxima. (The fixture run is
    # trained for 3 steps: alert quality is measured by bench/stream.py on the tiny preset.)
    p = np.asarray([r["p"] for r in lines])
    on = p >= scorer.threshold
    want = np.where(
        on & ~np.r_[False, on[:-1]], "start", np.where(~on & np.r_[False, on[:-1]], "end", "")
    )
    assert [r["event"] or "" for r in lines] == want.tolist()
    assert truth  # the stream has anomalies to alert on


@pytest.mark.slow
def test_stream_cli_and_calibration(vadllama_run, tmp_path, capsys):
    path = str(tmp_path / "cam.ts")
    write_stream(path, 20, SMALL)
    args = ["--stream", f"--workdir={vadllama_run}", f"--video={path}", "--idle_seconds=0.3"]
    code = E.main([*args, "--false_alarms_per_hour=0", "--calibration_videos=6"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    n = sum(len(c.frames) for c in iter_frames(path, fps=8.0, size=64))
    assert len(rows) == -(-n // 8) and "calibrated threshold" in err and "x real time" in err
    thr = float(err.split("calibrated threshold ")[1].split(":")[0])
    # The same stream from standard input (--video=-) gives the same lines at that threshold.
    with open(path, "rb") as raw:
        import sys

        stdin = io.TextIOWrapper(raw)
        old, sys.stdin = sys.stdin, stdin
        try:
            code = E.main(
                ["--stream", f"--workdir={vadllama_run}", "--video=-", f"--threshold={thr}"]
            )
        finally:
            sys.stdin = old
    out2, err2 = capsys.readouterr()
    assert code == 0 and "<stdin>" in err2, err2
    assert [json.loads(line) for line in out2.splitlines()] == rows
    # No alert may start in the normal windows of the calibration videos at that threshold.
    import vau_jax

    scorer = S.window_scorer(vau_jax.load_run(vadllama_run))
    probs, anomalous = S.calibration_windows(scorer, 6, 1.0)
    assert false_alarm_rate(probs, anomalous, 1.0, thr)[0] == 0.0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--threshold=0.5", "--false_alarms_per_hour=1"], "not both"),
        (["--window_seconds=0"], "--window_seconds must be positive"),
        (["--calibration_videos=0"], "--calibration_videos must be >= 1"),
    ],
)
def test_stream_flag_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as e:
        E.main(["--stream", f"--workdir={tmp_path}", "--video=-", *extra])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_stream_user_errors_are_one_line(tmp_path, capsys):
    mp4 = tmp_path / "cam.mp4"
    mp4.write_bytes(b"x")
    assert E.main(["--stream", f"--workdir={tmp_path}", f"--video={mp4}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "MPEG-TS or Matroska" in err[0]
    ts = tmp_path / "cam.ts"
    write_stream(str(ts), 2, SMALL)
    assert E.main(["--stream", f"--workdir={tmp_path}", f"--video={ts}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json" in err[0]  # not a run folder
    with pytest.raises(SystemExit) as e:
        E.main([f"--workdir={tmp_path}", "--video=-"])
    assert e.value.code == 2 and "needs --stream" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("method", ["vagpt", "tvau"])
def test_window_scores_equal_the_whole_video(method, vagpt_run, tvau_run, tmp_path):
    """VA-GPT's TETG and T-VAU's heatmap maxima, window by window (the causal background
    kept across windows) = the whole video's prediction."""
    import vau_jax

    run = vau_jax.load_run({"vagpt": vagpt_run, "tvau": tvau_run}[method])
    scorer = S.window_scorer(run)
    path = str(tmp_path / "cam.ts")
    write_stream(path, 12, SynthConfig(**dict(run.config.synthvad)))
    fps, size = run.frame_rate(), run.frame_size()
    frames = np.concatenate([c.frames for c in iter_frames(path, fps=fps, size=size)])
    whole, _ = run.predict(frames, fps, None)
    ref = whole["tetg_probs"] if method == "vagpt" else whole["frame_probs"]
    got = np.concatenate([scorer(frames[s : s + 5]) for s in range(0, len(frames), 5)])
    np.testing.assert_allclose(got, ref, atol=2e-6)  # measured 5.0e-7 (both)
    if method == "vagpt":  # an alert's type is an anomaly class, never "normal"
        assert scorer.classify(frames[:32]) in run.method.class_names
    else:
        assert scorer.classify(frames[:32]) is None
