"""Text-only pretraining of the tiny LLaMA that VA-GPT's video LLM starts from.

    python -m vau_jax.main --config=configs/text_pretrain.py

VA-GPT's tiny preset builds it automatically when missing (``data_cache/text_pretrain_<hash>``):
reports (captions with times) of SynthVAD *pretrain*-split videos, answered as multiple
choice on text, anomaly QA and summaries (vau_jax/methods/pretrain/text_llm.py). Reported:
``text_mc_acc``, the generated letter's accuracy on held-out pretrain-split reports (chance
0.25).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import ml_collections  # noqa: E402
from common import base_config, data_dir, parse_preset, text_lm_schedule  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    preset = parse_preset(arg, ("tiny",))
    c = base_config()
    c.method = "text_pretrain"
    c.preset = preset
    c.data_dir = data_dir()
    c.model = "tiny-llama"
    c.vocab_size = 512
    # The SynthVAD tokenizer (vau_jax/data/corpus.py: TOKENIZERS): "synthvad";
    # "synthvad_letters", where option letters are the same token in prompt and answer; or
    # "synthvad_times", every time ("4.9s") one token (needs vocab_size=712; README, VA-GPT,
    # *Times as single tokens*: text lookup ~3x faster, VA-GPT's seed 0 no better).
    c.tokenizer = "synthvad"
    # How the time tokens' input rows start (ours; methods/pretrain/prior_text.py
    # sinusoid_time_rows): "random", or "sinusoid" (half of each row sinusoids of the time,
    # so nearby times start alike; needs tokenizer="synthvad_times", vocab_size=712).
    c.time_embedding = "random"
    c.chat_format = "vicuna_v1"
    c.system = ""  # the Vicuna system sentence is 93 pieces of the tiny tokenizer: left out
    c.max_length = 288  # a report (normal stretches merged) + question + options: <= 270
    c.synthvad = ml_collections.ConfigDict({"height": 64, "width": 64, "fps": 8.0})
    c.num_train_videos = 300  # pretrain-split videos whose reports are trained on
    c.num_eval_videos = 64  # the next ones, held out for text_mc_acc
    c.num_train_examples = 6000
    # "object" (ours, methods/pretrain/text_llm.py): which object a report's anomaly involves,
    # so that the frozen LVLM T-VAU steers knows the words of its target answers. 0 = not
    # drawn (the corpus, its sampling and the model are those without it). 0.15, chosen on
    # T-VAU's validation split (3 seeds: Yes/No 0.865 vs 0.833, target BLEU-4 0.779 vs
    # 0.159) after VA-GPT's main job was measured with and without it (3 seeds: generated
    # Total 0.365 vs 0.325 in-domain, 0.384 vs 0.337 cross-domain, inside the swing that float
    # rounding alone gives VA-GPT's answers; README, VA-GPT / T-VAU).
    # prior_mc (ours, optional kind): four-option questions whose only evidence is a TETG-style
    # prior sentence (methods/pretrain/text_llm.py::prior_mc_conversation), so that reading
    # VA-GPT's prior and matching its interval among options is a text skill. 0.25 since
    # 2026-12-05 (VA-GPT seed 0 with the rest of that change: generated Total 0.349 with it vs
    # 0.292 without; 0.5 gave 0.443 vs 0.469 at 0.25 with video multiple choice; README, VA-GPT).
    c.mix = ml_collections.ConfigDict(
        {"mc": 0.5, "qa": 0.3, "summary": 0.2, "object": 0.15, "prior_mc": 0.25}
    )
    # What the prior_mc rows' TETG-style sentences call the class list: VA-GPT's word
    # (configs/vagpt.py tetg.types_word), the paper's "crime" (VA-GPT §3.3: "Known common crime
    # types are: ..."). "anomaly" until 2026-12-07; at that value the field stays out of the
    # pretraining cache key (methods/runner.py KEY_DEFAULTS), so caches made before keep theirs.
    c.prior_types_word = "crime"
    # Multiple-choice reports give times only roughly (each boundary moved by up to ±1 s):
    # choosing the option that agrees best with the evidence, not copying its numbers
    # (methods/pretrain/text_llm.py::approximate). 0 = exact times.
    c.mc_time_noise = 1.0
    # How multiple-choice rows are answered (vau_jax/data/benchmark.py MC_ANSWER_STYLES):
    # "letter", the letter and the option's text ("C. A person running from 2.1s to 4.5s");
    # "evidence" (ours), the report's anomaly restated in the anomaly-QA sentence, then the
    # letter ("Yes: a person running, between 2.3s and 4.4s. Answer: C."); "option" (ours), the
    # option's text, then its letter ("A person running from 2.1s to 4.5s. Answer: C.").
    c.mc_answer = "letter"
    # The loss weight of a multiple-choice answer's letter token (ours): 1 = every answer
    # token alike. The letter is the one token the evaluation scores; the rest of the answer
    # repeats an option (vau_jax/data/chat.py letter_weighted_row: the letter and where it
    # stands read off each answer). Rows of other kinds are unweighted, and so are the later
    # trainings' replayed rows unless their own weight says otherwise (VA-GPT's
    # train_data.mc_letter_weight).
    c.mc_letter_weight = 1.0
    # Conversations packed side by side into rows of this many tokens (vau_jax/data/packing.py;
    # attention stays inside each): 2.5 conversations per row, 98% filled, where padding each
    # to max_length filled 59%. 0 = one conversation per row.
    c.pack_length = 432
    # 600 steps of 16 packed rows see ~24,000 conversations, as 1,500 steps of 16 unpacked
    # rows did, in 58% of the time (README, VA-GPT: 353 s against 608 s on one machine).
    text_lm_schedule(c, steps=600)
    # 5 steps per jitted call (configs/common.py): 314.8 -> 243.2 s, the same model bit for bit
    # (README, *Training stack*).
    c.steps_per_call = 5
    return c
