"""Norms at the edited layer: individual query states, concept means (h_task), and how alike the means are."""
import sys, itertools, torch
from conceptlens.models.loader import load_model
from conceptlens.tasks.registry import load_family
from conceptlens.prompts import PromptFormat
from conceptlens.llm.interventions.definitions import heldout_prompts, query_activations, means_by_concept

lm = load_model("smollm2-135m")
for family, layer, fmt in (("bitwise", 22, PromptFormat(separator=" -> ", answer_prefix="")), ("pos", 19, PromptFormat())):
    fam = load_family(family, "train", seed=0)
    prompts, labels = heldout_prompts(fam, 4, 8, 0, fmt)
    acts = query_activations(lm, prompts, [layer])  # [1, N, d]
    means = means_by_concept(acts, labels)
    h = acts[0]
    grand = torch.stack([m[0] for m in means.values()]).mean(0)
    cos = [torch.nn.functional.cosine_similarity(means[a][0], means[b][0], dim=0).item() for a, b in itertools.combinations(means, 2)]
    dev = [((m[0] - grand).norm() / m[0].norm()).item() for m in means.values()]
    cos_h = torch.nn.functional.cosine_similarity(h, means[labels[0]][0].expand_as(h), dim=1)
    print(f"{family} layer {layer}: |h| mean {h.norm(dim=1).mean():.1f} (min {h.norm(dim=1).min():.1f}, max {h.norm(dim=1).max():.1f}); "
          f"|h_task| mean {torch.stack([m[0].norm() for m in means.values()]).mean():.1f}; "
          f"cosine between concept means min {min(cos):.3f} mean {sum(cos)/len(cos):.3f}; "
          f"|mean - grand mean| / |mean|: mean {sum(dev)/len(dev):.3f} max {max(dev):.3f}; "
          f"cosine of single states with one concept mean: mean {cos_h.mean():.3f}; "
          f"top-3 |dims| of the grand mean / its norm: {(grand.abs().topk(3).values / grand.norm()).tolist()}")
