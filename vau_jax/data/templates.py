"""Text templates of the instruction data (data, not code).

Every sentence that :mod:`vau_jax.data.instruct` writes comes from this table. Question lists
hold paraphrases; one is drawn per example with a seeded rng. Answer templates are
``str.format`` strings whose fields are named in the comment next to them. Times are written
with :data:`TIME_FORMAT` (seconds, one decimal: ``1.5s``).

To change the wording for a dataset, edit this table (or pass your own lists where a builder
takes ``questions=``); the builders never hard-code a sentence.
"""

from __future__ import annotations

# ``{t}`` is a time in seconds (float).
TIME_FORMAT = "{t:.1f}s"
# ``{start}``, ``{end}``: times already formatted with TIME_FORMAT.
INTERVAL_FORMAT = "from {start} to {end}"
# How several intervals are joined: "from 1.0s to 2.0s, from 3.0s to 4.0s and from 5.0s to 6.0s".
LIST_SEPARATOR = ", "
LIST_LAST_SEPARATOR = " and "

# The marker of the video in a human turn (LLaVA convention); the tokeniser replaces or drops it.
VIDEO_MARKER = "<video>"

# Human phrases for anomaly types; types not listed are written with "_" replaced by " ".
TYPE_PHRASES: dict[str, str] = {
    "normal": "no anomaly",
    "running": "a person running",
    "fighting": "people fighting",
    "falling": "a person falling",
    "explosion": "an explosion",
    "fire": "a fire",
    "vehicle": "a vehicle on the walkway",
    "abandoned_object": "an abandoned object",
}

# The anomalous object ("target") of each SynthVAD track kind.
TARGET_PHRASES: dict[str, str] = {
    "person": "person",
    "vehicle": "vehicle",
    "object": "bag",
    "fire": "fire",
    "explosion": "explosion",
}

# Spatial words (top/bottom/left/right/centre) as written in answers.
SPATIAL_PHRASES: dict[str, str] = {
    "top": "at the top of the frame",
    "bottom": "at the bottom of the frame",
    "left": "on the left of the frame",
    "right": "on the right of the frame",
    "centre": "in the centre of the frame",
}

# Trajectory phrases; keys are produced by ``instruct.trajectory_phrase``.
TRAJECTORY_PHRASES: dict[str, str] = {
    "static": "stays in place",
    "left": "moves to the left",
    "right": "moves to the right",
    "up": "moves up the frame",
    "down": "moves down the frame",
    "up_left": "moves up and to the left",
    "up_right": "moves up and to the right",
    "down_left": "moves down and to the left",
    "down_right": "moves down and to the right",
}

# --- LLaVA-style description conversations -------------------------------------------------
DESCRIBE_QUESTIONS: tuple[str, ...] = (
    "Describe this video.",
    "What is happening in this video?",
    "Describe the scene and the events in this video in detail.",
    "Give a detailed description of this surveillance video.",
    "What can you see in this video?",
)
ANOMALY_DESCRIBE_QUESTIONS: tuple[str, ...] = (
    "Describe the anomaly in this video, if there is one.",
    "Is anything unusual happening in this video? Explain.",
    "What abnormal event happens in this video, and when?",
)
# {event}: event description; {type}: type phrase; {intervals}: interval list.
ANOMALY_DESCRIBE_ANSWER = "{event} The anomaly is {type}, {intervals}."
# {event}: description of the normal activity.
NORMAL_DESCRIBE_ANSWER = "{event} Nothing unusual happens; there is no anomaly in this video."

# --- VA-GPT multiple choice -----------------------------------------------------------------
MC_QUESTIONS: tuple[str, ...] = (
    "Which option describes the anomaly in this video and when it happens?",
    "Select the anomaly type and the time interval of the anomaly in this video.",
    "What anomaly happens in this video, and when?",
)
# {type}: type phrase; {interval}: one interval.
MC_OPTION = "{type} {interval}"
MC_NORMAL_OPTION = "No anomaly happens in this video"
# {question}: question text; {options}: one "A. text" line per option.
MC_PROMPT = "{question}\n{options}\nAnswer with the option's letter from the given choices."
# {letter}, {text}
MC_OPTION_LINE = "{letter}. {text}"
MC_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
# A multiple-choice answer that states its evidence first (text pretraining's
# ``mc_answer="evidence"``); {evidence}: the anomaly QA sentence; {letter}: the option's letter.
MC_REASONED_ANSWER = "{evidence} Answer: {letter}."
# A multiple-choice answer that repeats the chosen option's text, then gives its letter (text
# pretraining's ``mc_answer="option"``): the letter is looked up after the text is written.
MC_OPTION_ANSWER = "{text}. Answer: {letter}."

# --- VA-GPT temporal prior (TETG) -----------------------------------------------------------
# {word}: what the types are called; {types}: quoted, comma-separated class names;
# {start}, {end}: formatted times. The paper's wording (VA-GPT §3.3): "Known common crime types
# are: 'Shooting', 'Arson', 'Arrest', ... There is one of the crime types occurring from to".
TETG_CLASSES = "Known common {word} types are: {types}."
TETG_INTERVAL = "There is one of the {word} types occurring from {start} to {end}."
#: The paper's word for the class list, the default of every TETG sentence.
TETG_TYPES_WORD = "crime"
#: The word every sentence used before it became a setting (until 2026-12-07): what a saved
#: config without the field (an older run or cached pretraining) was trained with.
TETG_TYPES_WORD_BEFORE = "anomaly"
TETG_NONE = "No anomaly is detected in this video."

# --- VAD-LLaMA pseudo-instructions ----------------------------------------------------------
VADLLAMA_QUESTIONS: tuple[str, ...] = (
    "Is there any anomaly in this video? If so, when does it happen?",
    "Are there anomalies in the video? Give their time intervals.",
    "Does anything abnormal happen in this video, and at what time?",
    "When does the anomaly happen in this video?",
)
# {intervals}: interval list (one or several).
VADLLAMA_YES = "Yes, there are anomalies {intervals}."
VADLLAMA_NO = "No, there is no anomaly in this video."

# --- T-VAU ----------------------------------------------------------------------------------
YES_NO_QUESTIONS: tuple[str, ...] = (
    "Is there an anomaly in this video?",
    "Does this video contain an anomaly?",
    "Is anything abnormal happening in this video?",
)
# {type}: type phrase.
YES_ANSWER = "Yes, there is an anomaly: {type}."
NO_ANSWER = "No, there is no anomaly in this video."

TARGET_QUESTIONS: tuple[str, ...] = (
    "What is the anomalous object?",
    "Which object is involved in the anomaly?",
)
# {target}: target phrase.
TARGET_ANSWER = "The anomalous object is the {target}."
TARGET_NONE_ANSWER = "There is no anomalous object in this video."

# {target}: target phrase.
TRAJECTORY_QUESTIONS: tuple[str, ...] = (
    "How does the {target} move?",
    "Describe the motion of the {target}.",
)
# {target}: target phrase; {trajectory}: trajectory phrase.
TRAJECTORY_ANSWER = "The {target} {trajectory}."

SPATIAL_QUESTIONS: tuple[str, ...] = (
    "Where in the frame does the anomaly happen?",
    "In which part of the frame is the anomaly?",
)
# {where}: spatial phrase.
SPATIAL_ANSWER = "The anomaly happens {where}."
SPATIAL_NONE_ANSWER = "There is no anomaly in this video."

# --- Conversation rendering for the language model (Vicuna v1 style) -----------------------
SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# Prefixes of each role's turn; the assistant text (plus EOS) is the training target.
ROLE_PREFIX: dict[str, str] = {"human": " USER: ", "gpt": " ASSISTANT: "}

# --- Chat formats (data): how a conversation is laid out as text ----------------------------
# Each format: ``bos`` (prepend the tokenizer's BOS id), ``system`` (default system prompt),
# ``system_format`` ({system}), ``user_format`` ({text}: the human turn), ``assistant_prefix``
# (written before every assistant turn and at the end of a generation prompt),
# ``assistant_suffix`` (text after an assistant answer, part of the training target) and
# ``eos_after_assistant`` (append the EOS id after an answer, also a target).
CHAT_FORMATS: dict[str, dict[str, object]] = {
    # Vicuna v1.1 / LLaMA-VID / VA-GPT: "<s>SYSTEM USER: q ASSISTANT: a</s>".
    "vicuna_v1": {
        "bos": True,
        "system": SYSTEM_PROMPT,
        "system_format": "{system}",
        "user_format": ROLE_PREFIX["human"] + "{text}",
        "assistant_prefix": ROLE_PREFIX["gpt"],
        "assistant_suffix": "",
        "eos_after_assistant": True,
    },
    # ChatML (SmolLM2-Instruct): "<|im_start|>role\ntext<|im_end|>\n"; <|im_end|> is its EOS.
    "chatml": {
        "bos": False,
        "system": "You are a helpful AI assistant that watches surveillance videos.",
        "system_format": "<|im_start|>system\n{system}<|im_end|>\n",
        "user_format": "<|im_start|>user\n{text}<|im_end|>\n",
        "assistant_prefix": "<|im_start|>assistant\n",
        "assistant_suffix": "<|im_end|>",
        "eos_after_assistant": False,
    },
}
