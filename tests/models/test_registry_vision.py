"""Full-size vision/CLIP variants: parameter counts vs HF (meta device) and logical axes."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from vau_jax.models import clip_text, vit

# name -> published parameter count (HF model of that architecture), for reading; the test
# compares with the count of the HF reference model built on the meta device.
PUBLISHED = {
    "clip-vit-b/16": 85.80e6,  # openai/clip-vit-base-patch16 vision tower
    "clip-vit-l/14": 303.18e6,  # openai/clip-vit-large-patch14 vision tower
    "clip-vit-l/14-336": 303.51e6,  # openai/clip-vit-large-patch14-336 vision tower
    "dinov2-s/14": 22.06e6,  # facebook/dinov2-small
    "dinov2-b/14": 86.58e6,  # facebook/dinov2-base
    "dinov2-l/14": 304.37e6,  # facebook/dinov2-large
    "dinov2-g/14": 1136.48e6,  # facebook/dinov2-giant
    "eva-vit-g/14": 985.95e6,  # Salesforce/blip2-* vision model (EVA-CLIP ViT-g/14)
    "clip-text-b": 63.17e6,  # openai/clip-vit-base-patch16 text tower
    "clip-text-l": 123.06e6,  # openai/clip-vit-large-patch14 text tower
    "clip-b/16": 149.62e6,  # openai/clip-vit-base-patch16
    "clip-l/14": 427.62e6,  # openai/clip-vit-large-patch14
}


def _family(name):
    return vit if name in vit.PRESETS else clip_text


def _abstract(name):
    fam = _family(name)
    cfg = fam.PRESETS[name]
    module = fam.module_from_config(cfg)
    args, kwargs = fam.dummy_inputs(cfg)
    return jax.eval_shape(lambda: module.init(jax.random.key(0), *args, **kwargs))["params"]


def _count(tree):
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(nn.unbox(tree))))


def _hf_reference(name):
    torch = pytest.importorskip("torch")
    t = pytest.importorskip("transformers")

    def clip_vision(width, layers, heads, patch, image=224):
        return dict(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            patch_size=patch,
            image_size=image,
        )

    def clip_txt(width, heads):
        return dict(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=12,
            num_attention_heads=heads,
        )

    def dino(width, layers, heads, **kw):
        return t.Dinov2Model(
            t.Dinov2Config(
                hidden_size=width,
                num_hidden_layers=layers,
                num_attention_heads=heads,
                image_size=518,
                patch_size=14,
                **kw,
            )
        )

    builders = {
        "clip-vit-b/16": lambda: t.CLIPVisionModel(
            t.CLIPVisionConfig(**clip_vision(768, 12, 12, 16))
        ),
        "clip-vit-l/14": lambda: t.CLIPVisionModel(
            t.CLIPVisionConfig(**clip_vision(1024, 24, 16, 14))
        ),
        "clip-vit-l/14-336": lambda: t.CLIPVisionModel(
            t.CLIPVisionConfig(**clip_vision(1024, 24, 16, 14, 336))
        ),
        "dinov2-s/14": lambda: dino(384, 12, 6),
        "dinov2-b/14": lambda: dino(768, 12, 12),
        "dinov2-l/14": lambda: dino(1024, 24, 16),
        "dinov2-g/14": lambda: dino(1536, 40, 24, use_swiglu_ffn=True),
        "eva-vit-g/14": lambda: t.Blip2VisionModel(t.Blip2VisionConfig()),
        "clip-text-b": lambda: t.CLIPTextModel(t.CLIPTextConfig(**clip_txt(512, 8))),
        "clip-text-l": lambda: t.CLIPTextModel(t.CLIPTextConfig(**clip_txt(768, 12))),
        "clip-b/16": lambda: t.CLIPModel(
            t.CLIPConfig(
                text_config=clip_txt(512, 8),
                vision_config=clip_vision(768, 12, 12, 16),
                projection_dim=512,
            )
        ),
        "clip-l/14": lambda: t.CLIPModel(
            t.CLIPConfig(
                text_config=clip_txt(768, 12),
                vision_config=clip_vision(1024, 24, 16, 14),
                projection_dim=768,
            )
        ),
    }
    with torch.device("meta"):  # nothing is allocated
        model = builders[name]()
    return sum(p.numel() for p in model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_full_size_param_count(name):
    ours = _count(_abstract(name))
    ref = _hf_reference(name)
    assert abs(ours - ref) / ref <= 0.005, (name, ours, ref)
    assert abs(ours - PUBLISHED[name]) / PUBLISHED[name] <= 0.005, (name, ours)


@pytest.mark.parametrize(
    "name", ["tiny-clip-vit", "tiny-dinov2", "tiny-eva-vit", "tiny-clip", "dinov2-g/14"]
)
def test_every_param_has_logical_axes(name):
    tree = _abstract(name)
    leaves = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    specs = jax.tree.leaves(
        nn.get_partition_spec(tree), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)
    )
    assert len(leaves) == len(specs) > 0
    for leaf, spec in zip(leaves, specs):
        assert isinstance(leaf, nn.LogicallyPartitioned), leaf
        assert len(spec) == len(leaf.value.shape), (spec, leaf.value.shape)


def test_presets_are_registered_and_hashable():
    import dataclasses
    import json

    from vau_jax.models import registry

    names = set(registry.list_models())
    for name in [*vit.PRESETS, *clip_text.PRESETS]:
        assert name in names
        cfg = registry.get_config(name)
        hash(cfg)
        json.dumps(dataclasses.asdict(cfg))
    assert registry.get_config("tiny-clip").vision_config == vit.PRESETS["tiny-clip-vit"]
