"""Write the bundled sentiment example, ``reviews-train.csv``: short reviews generated from templates.

Made for LLM Lab (no outside text): sentences are assembled from hand-written pieces (openers, aspects of five
domains, opinion phrases, endings) with a seeded random generator, labelled by construction as positive, negative
or neutral. ``reviews-test.csv`` beside it was written by hand, sentence by sentence, with other wording, so the
held-out score measures a change of wording and not only of which pieces were drawn. See assets/README.md.

    python assets/datasets/make_reviews.py            # rewrites reviews-train.csv (600 rows, seed 0)
    python assets/datasets/make_reviews.py --rows 2000 --out /tmp/reviews-2000.csv
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = ("negative", "neutral", "positive")

# domain -> (things one reviews, aspects of them)
DOMAINS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "film": (("film", "movie", "documentary", "sequel", "thriller", "comedy"),
             ("acting", "plot", "soundtrack", "ending", "script", "camera work", "pacing", "dialogue")),
    "restaurant": (("restaurant", "cafe", "bistro", "pizzeria", "diner", "noodle bar"),
                   ("food", "service", "dessert", "coffee", "staff", "menu", "soup", "portions")),
    "product": (("phone", "laptop", "blender", "kettle", "headset", "vacuum cleaner", "camera"),
                ("battery", "screen", "build quality", "price", "sound", "motor", "charger", "manual")),
    "hotel": (("hotel", "hostel", "guest house", "resort", "inn"),
              ("room", "bed", "breakfast", "location", "shower", "reception", "pool", "view")),
    "book": (("novel", "book", "memoir", "cookbook", "short story collection"),
             ("writing", "characters", "story", "translation", "cover", "last chapter", "recipes", "humour")),
}
POSITIVE = ("excellent", "wonderful", "superb", "really good", "fantastic", "lovely", "brilliant", "great",
            "outstanding", "delightful", "first-rate", "a joy")
NEGATIVE = ("awful", "terrible", "dreadful", "really bad", "poor", "disappointing", "a mess", "horrible",
            "useless", "painful", "a letdown", "far below par")
MILD_BAD = ("a bit slow", "rather loud", "slightly pricey", "a little plain", "nothing new")
MILD_GOOD = ("decent", "nice enough", "pretty", "fine", "quick")
POSITIVE_VERBS = ("I loved", "We really enjoyed", "I was impressed by", "I would happily recommend",
                  "Everyone at our table praised", "I can't stop thinking about")
NEGATIVE_VERBS = ("I hated", "We regretted", "I was annoyed by", "I would warn anyone about",
                  "Nobody in our group liked", "I want my money back for")
POSITIVE_ENDINGS = ("Highly recommended!", "I will be back.", "Worth every penny.", "Five stars.",
                    "Can't wait to try it again.", "A real treat.", "")
NEGATIVE_ENDINGS = ("Avoid it.", "Never again.", "What a waste of money.", "One star.", "Save yourself the trouble.",
                    "Not worth it.", "")
NEUTRAL = (
    "The {thing} has {n} reviews so far and I am adding mine.",
    "I went to the {thing} on a {day} with two friends.",
    "The {aspect} of the {thing} is about what you would expect for the price.",
    "The {thing} was neither good nor bad; the {aspect} was average.",
    "I have used the {thing} for {n} days and have no strong opinion yet.",
    "The {aspect} is fine, nothing special.",
    "This {thing} came out in {year}.",
    "Some people like the {aspect}, others don't; it did not matter much to me.",
    "The {thing} is okay. The {aspect} is ordinary.",
    "I bought the {thing} on a {day}; it does what the description says.",
    "It is a {thing} like many others, with an average {aspect}.",
    "The {aspect} was acceptable, and the rest of the {thing} was the same.",
    "My review of the {thing}: the {aspect} is standard and the rest is standard too.",
    "Nothing to report about the {thing}; the {aspect} was as described.",
)
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _opinion(rng: random.Random, thing: str, aspect: str, label: str) -> str:
    good = label == "positive"
    words = POSITIVE if good else NEGATIVE
    verbs = POSITIVE_VERBS if good else NEGATIVE_VERBS
    endings = POSITIVE_ENDINGS if good else NEGATIVE_ENDINGS
    pattern = rng.randrange(8)
    if pattern == 0:
        core = f"The {aspect} was {rng.choice(words)}."
    elif pattern == 1:
        core = f"{rng.choice(verbs)} the {aspect} of this {thing}."
    elif pattern == 2:
        core = f"What {('a wonderful' if good else 'an awful')} {thing}, the {aspect} was {rng.choice(words)}."
    elif pattern == 3:  # a contrast: the verdict is the second half
        core = f"The {aspect} was {rng.choice(MILD_BAD if good else MILD_GOOD)}, but overall the {thing} was " \
               f"{rng.choice(words)}."
    elif pattern == 4:
        core = f"This {thing} is {rng.choice(words)} and the {aspect} is {rng.choice(words)}."
    elif pattern == 5:  # negation
        core = f"The {aspect} was not {'bad at all' if good else 'good at all'}, honestly {rng.choice(words)}."
    elif pattern == 6:
        core = f"{'Best' if good else 'Worst'} {thing} I have tried this year: the {aspect} is {rng.choice(words)}."
    else:
        core = f"I {'would' if good else 'would not'} recommend this {thing}; the {aspect} is {rng.choice(words)}."
    return f"{core} {rng.choice(endings)}".strip()


def generate(rows: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``rows`` distinct (text, label, domain) triples, the labels in equal shares, shuffled."""
    rng = random.Random(seed)
    out, seen = [], set()
    while len(out) < rows:
        label = LABELS[len(out) % 3]
        domain = rng.choice(list(DOMAINS))
        things, aspects = DOMAINS[domain]
        thing, aspect = rng.choice(things), rng.choice(aspects)
        if label == "neutral":
            text = rng.choice(NEUTRAL).format(thing=thing, aspect=aspect, n=rng.randint(2, 40),
                                              day=rng.choice(DAYS), year=rng.randint(1995, 2024))
        else:
            text = _opinion(rng, thing, aspect, label)
        text = text[0].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append((text, label, domain))
    rng.shuffle(out)
    return out


def write(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label", "domain"])
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "reviews-train.csv")
    args = parser.parse_args()
    write(args.out, generate(args.rows, args.seed))


if __name__ == "__main__":
    main()
