"""Encoding study: concept encoding (CE) and TD of a pretrained LM across layers, shots and checkpoints."""
