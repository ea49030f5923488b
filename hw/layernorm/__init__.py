"""LayerNorm row units, one module per candidate, each defining ``UNIT``: :mod:`.ibert`
(``layernorm/ibert``), :mod:`.ivit` (``layernorm/ivit``), :mod:`.fqvit` (``layernorm/fqvit``);
shared helpers and the I-BERT/I-ViT datapath in :mod:`.common`. Each is built from its golden
config (``intvit.golden_model.ops.layernorm.<candidate>``) and bit-exact to it."""
