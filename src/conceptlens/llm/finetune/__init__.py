"""Layer-selective finetuning of a pretrained LM: data, layer choice, training, checkpoints, report."""
