"""Integer operators, one module per operator family (requantizer, softmax, GELU, LayerNorm)."""
