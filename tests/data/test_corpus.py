"""The SynthVAD text corpus: every caption template, then each train video's sentences, the
same list whether the videos render in this process or in a spawn pool."""

from vau_jax.data import synthvad
from vau_jax.data.corpus import synthvad_corpus
from vau_jax.data.synthvad import text as synth_text

TINY = synthvad.SynthConfig(min_seconds=1.0, max_seconds=2.5)


def test_pooled_corpus_equals_the_in_process_corpus():
    alone = synthvad_corpus(3, TINY, workers=1)
    pooled = synthvad_corpus(3, TINY, workers=2)
    assert pooled == alone
    templates = sum(
        len(synthvad.SPATIAL_WORDS) if "{where}" in c else 1
        for c in synth_text.FRAME_CAPTIONS.values()
    )
    # after the templates come video 0's scene and event descriptions, in that order
    v0 = synthvad.render_split_video("train", 0, TINY)
    assert alone[templates : templates + 2] == [v0.scene_description, v0.event_description]
    v2 = synthvad.render_split_video("train", 2, TINY)
    assert v2.event_description in alone[templates + 2 :]
    assert len(alone) > templates + 6
