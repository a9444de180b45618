"""Helpers shared by the HF parity tests (torch imported lazily: tests skip without it)."""


def perturb(model, seed):
    """Random values for every parameter (HF init leaves layerscale at 1, biases at 0...)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def save(model, path) -> str:
    """``save_pretrained`` as safetensors; returns the folder as a string."""
    model.save_pretrained(str(path), safe_serialization=True)
    return str(path)


#: A tiny OPT text config, the language model of the tiny BLIP-2 test folders.
TINY_OPT = dict(
    model_type="opt",
    vocab_size=64,
    hidden_size=32,
    ffn_dim=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    word_embed_proj_dim=32,
    max_position_embeddings=64,
)
