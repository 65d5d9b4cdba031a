"""Draw and score the hand check of the real-sentence part-of-speech corpus (data/pos_web).

`sample`: a seeded random sample of sentences (random.Random(seed).sample), skipping sentences an
earlier round already checked, written as hand_check.csv rows (round, sentence, tag, answer,
correct, note) with `correct` left empty for the reader. `score`: error rate per tag and overall.
Usage: python scripts/pos_hand_check.py sample sentences.jsonl hand_check.csv --round 1 --seed 0 --n 100
       python scripts/pos_hand_check.py score hand_check.csv
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
from collections import Counter

TAGS = ("Noun", "Adjective", "Verb", "Adverb", "Preposition", "Pronoun")
FIELDS = ["round", "sentence", "tag", "answer", "correct", "note"]


def read(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sample(corpus: str, out: str, round_: int, seed: int, n: int) -> None:
    """Append `n` unchecked sentences (seeded) to `out`, six rows each, `correct` empty."""
    rows = [json.loads(line) for line in open(corpus, encoding="utf-8") if line.strip()]
    done = {r["sentence"] for r in read(out)}
    pool = [r for r in rows if r["sentence"] not in done]
    picked = random.Random(seed).sample(pool, n)
    new = not os.path.exists(out)
    with open(out, "a", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        if new:
            writer.writeheader()
        for r in picked:
            for tag in TAGS:
                writer.writerow({"round": round_, "sentence": r["sentence"], "tag": tag,
                                 "answer": r["answers"][tag], "correct": "", "note": ""})


def score(path: str) -> None:
    """Print, per round, wrong / checked answers per tag, overall, and sentences with an error."""
    rows = read(path)
    for round_ in sorted({r["round"] for r in rows}):
        part = [r for r in rows if r["round"] == round_]
        if any(r["correct"] not in ("yes", "no") for r in part):
            raise SystemExit(f"round {round_}: every `correct` must be yes or no")
        wrong = Counter(r["tag"] for r in part if r["correct"] == "no")
        total = Counter(r["tag"] for r in part)
        bad = {r["sentence"] for r in part if r["correct"] == "no"}
        print(f"round {round_}: {len({r['sentence'] for r in part})} sentences")
        for tag in TAGS:
            print(f"| {tag} | {wrong[tag]}/{total[tag]} | {100 * wrong[tag] / total[tag]:.1f}% |")
        n_wrong, n = sum(wrong.values()), sum(total.values())
        print(f"| all answers | {n_wrong}/{n} | {100 * n_wrong / n:.1f}% |")
        print(f"| sentences with an error | {len(bad)}/{len({r['sentence'] for r in part})} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample")
    s.add_argument("corpus")
    s.add_argument("out")
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n", type=int, default=100)
    c = sub.add_parser("score")
    c.add_argument("path")
    args = parser.parse_args()
    if args.command == "sample":
        sample(args.corpus, args.out, args.round, args.seed, args.n)
    else:
        score(args.path)


if __name__ == "__main__":
    main()
