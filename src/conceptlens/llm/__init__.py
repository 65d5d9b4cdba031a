"""Pretrained-LM study: ICL accuracy, concept encoding, interventions, layer-selective finetuning."""
