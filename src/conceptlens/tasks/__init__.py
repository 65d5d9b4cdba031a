"""Task families and samplers: synthetic regression mixtures and LLM concept families."""
