"""The finetuning loop alone, as a process the fault tests can SIGKILL (the CLI adds the slow studies).

`python finetune_driver.py MODEL FAMILY RUN [--resume]`: LoRA on block 0 of the local model
folder MODEL, k-shot prompts from the user family folder FAMILY, 24 optimizer steps of batch 4,
a checkpoint every 2 steps, then the adapter, exactly as `conceptlens llm finetune` trains.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(model: str, family: str, run: str, resume: bool) -> None:
    import torch

    torch.set_num_threads(1)
    from conceptlens.llm.finetune.checkpoint import CHECKPOINT
    from conceptlens.llm.finetune.data import encode_example, training_prompts
    from conceptlens.llm.finetune.train import TrainingConfig, prepare_model, save_finetuned, train_model
    from conceptlens.models import load_model
    from conceptlens.storage import write_json
    from conceptlens.tasks.registry import load_family

    out = Path(run)
    out.mkdir(parents=True, exist_ok=True)
    lm = load_model(model)
    config = TrainingConfig(layers=[0], method="lora", rank=4, alpha=8, dropout=0.1, lr=1e-3, batch_size=4).validate()
    pairs = training_prompts(load_family(family, split="train", seed=0), 96, 2, 0)
    examples = [encode_example(lm.tokenizer, prompt, concept) for concept, prompt in pairs]
    model_ = prepare_model(lm, config)
    log = train_model(model_, examples, config, out, lm.tokenizer.pad_token_id, resume=resume, checkpoint_every=2)
    save_finetuned(model_, out, config)
    write_json(out / "trained.json", {"steps": len(log), "final_loss": log[-1]["loss"]})
    (out / CHECKPOINT).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], "--resume" in sys.argv[4:])
