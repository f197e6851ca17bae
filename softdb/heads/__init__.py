"""Real transformer heads as tables: every head of a BERT-family layer is a soft key-value lookup.

:func:`transformer_heads` (one layer) and :func:`all_heads` (every layer) run the model
once on a text and return one projected :class:`~softdb.SoftTable` per head, whose
``weights`` are the model's own attention probabilities and whose ``lookup`` is the
head's context vectors (before W_O). :func:`model_attentions` is the model's side of
that comparison, for a batch of texts: hidden states, attentions, per-head contexts.
The default model is the bundled all-MiniLM-L6-v2 (6 layers × 12 heads of width 32).
"""

from softdb.heads._model import BERT_FAMILY, LayerWeights, ModelRun, model_attentions
from softdb.heads._tables import Heads, all_heads, heads_of_run, layer_tables, transformer_heads

__all__ = [
    "BERT_FAMILY",
    "Heads",
    "LayerWeights",
    "ModelRun",
    "all_heads",
    "heads_of_run",
    "layer_tables",
    "model_attentions",
    "transformer_heads",
]
