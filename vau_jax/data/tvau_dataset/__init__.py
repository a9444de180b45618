"""T-VAU's offline fine-grained dataset construction (paper: "Fine-grained Anomaly
Understanding Dataset Construction"), from a UBnormal or ShanghaiTech tree.

    stats = build("ubnormal", "/data/UBnormal", "/out", annotator="oracle", split="all")

The dataset is read with the real readers (``formats.layouts.read_layout``); training videos
get their frame truth back where the tree holds it (UBnormal ``_annotations/``, ShanghaiTech
``testing/`` masks): T-VAU builds its supervision from the anomaly masks. Frames are sampled
every ``frame_stride`` native frames (0-based indices). Boxes are inclusive pixels.

Stage 1, frame-wise structured records (:class:`FrameRecord`): per sampled frame, each
visible object's kind (person/vehicle/object/fire/explosion), colour (``None`` if unknown),
size (small/medium/large by box area), action (walking/running/...), box and spatial word.
An **annotator** writes them (:class:`Annotator`, registry :data:`ANNOTATORS`):
``oracle`` is the SynthVAD renderer's ground truth: the tree's ``meta.json`` (written by
``synthvad.layouts.write_layout``) gives each video's seed, type and render config, the video
is re-rendered (the layout's masks hold the anomalous objects only; the re-render knows
every walker too) and checked against the layout's frame truth; colour is the nearest
SynthVAD palette name of the object's mask pixels. ``noisy`` wraps the oracle, seeded by
``seed`` and the video id: box jitter, swapped colour/size words, objects whose anomaly flag
it does not know, and injected contradictory objects (:class:`NoiseConfig`). Without
``meta.json`` (a real dataset) the oracle raises; a real LLM/VLM annotator (frame-wise
structured prompting) plugs in with ``register("name", cls)``.
Stage 2, object timelines (:class:`Timeline`): one per object: frames, boxes ``[M, 4]``,
first/last frame, attribute consensus (majority), dominant spatial word, trajectory key
(``instruct.trajectory_key``; static kinds "static"), net displacement in frame sizes.
An object the annotator did not flag is anomalous when its box lies in the layout's
anomaly boxes (median cover >= 0.5 on anomalous frames; a walker inside a large explosion
box can pass). The first anomalous object is the target (as ``instruct.facts_from_synth``).
Stage 3, anomaly-focused refinement: (a) each anomalous sampled frame is written with its
background Gaussian-blurred and the anomaly mask (the layout's masks, else the anomalous
boxes) sharp, ``OUT/refined/<video>/<frame:06d>.png`` (``write_refined``); (b) cross-modal
consistency: a timeline whose appearance and motion contradict each other is dropped, per
reason of :data:`DROP_REASONS`: ``static_moves`` (action "static", e.g. a bag, with a net
displacement >= 0.25 frame; fire and explosions are "burning"/"exploding": their boxes
spread), ``running_still`` (action "running", >= 3 frames over >= 0.75 s, net displacement
< 0.05 frame); thresholds in :class:`Consistency`. On SynthVAD the oracle drops nothing.

Outputs (atomic; same inputs and seed give the same files). ``OUT/tvau_annotations.json``:
``{"format": "vau_jax.tvau/1", "dataset", "annotator", "split", "seed", "frame_stride",
"videos": {id: {"split", "fps", "n_frames", "width", "height", "anomaly_type" ("normal" or
type), "intervals_frames" [[s, e)], "intervals_seconds" [[s, e)], "objects": [{"object_id",
"kind", "colour", "size", "action", "anomalous", "first_frame", "last_frame", "frames",
"boxes", "spatial_word", "trajectory", "displacement"}], "targets" [object ids],
"target" (phrase or ""), "trajectory" (key or ""), "spatial_word" (or ""), "dropped":
[{"object_id", "kind", "action", "reason"}]}}}``. ``OUT/questions.jsonl``, one line each:
``{"video", "split", "kind" (yes_no|target|trajectory|spatial), "question", "answer",
"conversations"}`` (LLaVA turns, ``instruct``'s builders). ``OUT/stats.json`` = the return of
:func:`build`: videos, objects, frames, records, questions, refined frames, ``dropped`` and
``injected`` per reason, ``skipped`` (anomalous videos without frame truth).
"""

from __future__ import annotations

from vau_jax.data.tvau_dataset.annotators import (
    ANNOTATORS,
    Annotator,
    NoiseConfig,
    NoisyAnnotator,
    OracleAnnotator,
    parse_noise,
    register,
)
from vau_jax.data.tvau_dataset.pipeline import (
    QUESTION_BUILDERS,
    build,
    question_lines,
    video_entry,
    write_refined_frames,
)
from vau_jax.data.tvau_dataset.reading import attach_truth, read_frames_at, read_videos
from vau_jax.data.tvau_dataset.records import (
    DATASETS,
    DROP_REASONS,
    FORMAT,
    SIZES,
    SPLITS,
    Annotation,
    FrameRecord,
    Timeline,
    VideoInput,
    colour_word,
    make_record,
    size_word,
)
from vau_jax.data.tvau_dataset.stages import (
    Consistency,
    anomaly_mask,
    assign_anomalous,
    blur_outside,
    build_timelines,
    contradiction,
    displacement,
    refine,
)

__all__ = [
    "attach_truth",
    "ANNOTATORS",
    "DATASETS",
    "DROP_REASONS",
    "FORMAT",
    "QUESTION_BUILDERS",
    "SIZES",
    "SPLITS",
    "Annotation",
    "Annotator",
    "Consistency",
    "FrameRecord",
    "NoiseConfig",
    "NoisyAnnotator",
    "OracleAnnotator",
    "Timeline",
    "VideoInput",
    "anomaly_mask",
    "assign_anomalous",
    "blur_outside",
    "build",
    "build_timelines",
    "colour_word",
    "contradiction",
    "displacement",
    "make_record",
    "parse_noise",
    "question_lines",
    "read_frames_at",
    "read_videos",
    "refine",
    "register",
    "size_word",
    "video_entry",
    "write_refined_frames",
]
