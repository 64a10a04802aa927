"""Generate the shipped corpus: ``corpus/chat.jsonl.gz`` (chat prompts with responses) and ``corpus/text.jsonl.gz``.

The corpus is written for this project from templates over the hand-written facts in `corpus_facts` (no third-party
text). It is deterministic for a seed. Regenerate with::

    python -m crosscoder.data.make_corpus --out crosscoder/data/corpus
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crosscoder.data import corpus_facts as F
from crosscoder.io import atomic_write_bytes

Pair = tuple[str, str]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _bare(name: str) -> str:
    return name[4:] if name.startswith("the ") else name


def animal_qa(r: random.Random) -> Pair:
    name, kind, habitat, diet, fact = r.choice(F.ANIMALS)
    b = _bare(name)
    forms = [
        (
            f"Tell me about {name}.",
            f"{_cap(name)} is a {kind} that lives in {habitat}. It eats {diet}. One interesting fact: {fact}.",
        ),
        (f"What does {name} eat?", f"{_cap(name)} feeds mainly on {diet}."),
        (f"Where do {b}s live?", f"They live in {habitat}."),
        (f"Give me a fun fact about {b}s.", f"Here is one: {fact}. {_cap(name)} is a {kind}, by the way."),
        (f"Is {name} a mammal?", f"{'Yes' if kind == 'mammal' else 'No'}, {name} is a {kind}."),
        (
            f"Write two sentences about {b}s for a children's book.",
            f"{_cap(name)} lives in {habitat} and loves to eat {diet}. Did you know that {fact}?",
        ),
    ]
    return r.choice(forms)


def country_qa(r: random.Random) -> Pair:
    name, continent, capital, language, known = r.choice(F.COUNTRIES)
    forms = [
        (f"What is the capital of {name}?", f"The capital of {name} is {capital}."),
        (f"Which languages are spoken in {name}?", f"The main language of {name} is {language}."),
        (
            f"I'm visiting {name} next month. What is it known for?",
            f"{name} is known for {known}. Have a wonderful trip!",
        ),
        (f"Where is {name}?", f"{name} is in {continent}; its capital is {capital}."),
        (
            f"Give me a short overview of {name}.",
            f"{name} is a country in {continent}. Its capital is {capital}, people speak {language}, and it is famous for {known}.",
        ),
        (f"Quick question: capital of {name}?", f"{capital}."),
    ]
    return r.choice(forms)


def concept_qa(r: random.Random) -> Pair:
    name, expl, analogy = r.choice(F.CONCEPTS)
    forms = [
        (f"What is {name}?", f"{_cap(name)} is {expl}."),
        (f"Can you explain {name} in simple terms?", f"Sure. {_cap(name)} is {expl}. You can picture it as {analogy}."),
        (f"Explain {name} to a ten-year-old.", f"Imagine {analogy}. That is roughly what {name} is: {expl}."),
        (
            f"I never understood {name}. Help?",
            f"No problem! In short, {name} is {expl}. A handy way to remember it: think of {analogy}.",
        ),
        (f"Define {name} in one sentence.", f"{_cap(name)} is {expl}."),
        (
            f"Why does {name} matter?",
            f"{_cap(name)} is {expl}. Understanding it helps explain many everyday things, the way {analogy} makes the idea easy to see.",
        ),
    ]
    return r.choice(forms)


def howto_qa(r: random.Random) -> Pair:
    task, steps = r.choice(F.HOWTOS)
    numbered = "\n".join(f"{i + 1}. {s}." for i, s in enumerate(steps))
    prose = " Then ".join(s[0].lower() + s[1:] for s in steps)
    forms = [
        (f"How do I {task}?", f"Here is a simple way to {task}:\n{numbered}"),
        (f"What are the steps to {task}?", numbered),
        (f"Can you tell me how to {task}? Keep it brief.", f"{_cap(prose)}."),
        (f"Give me three tips to {task}.", "\n".join(f"- {s}." for s in r.sample(steps, 3))),
        (
            f"I want to {task} but don't know where to start.",
            f"Start small: {steps[0].lower()}. After that, {steps[1].lower()}, and {steps[2].lower()}. Good luck!",
        ),
    ]
    return r.choice(forms)


def compare_qa(r: random.Random) -> Pair:
    if r.random() < 0.5:
        (a, ka, ha, _, fa), (b, kb, hb, _, fb) = r.sample(F.ANIMALS, 2)
        return (
            f"What is the difference between {a} and {b}?",
            f"{_cap(a)} is a {ka} that lives in {ha}, while {b} is a {kb} found in {hb}. As for {a}, {fa}; as for {b}, {fb}.",
        )
    (a, ca, pa, la, _), (b, cb, pb, lb, _) = r.sample(F.COUNTRIES, 2)
    return (
        f"Compare {a} and {b} briefly.",
        f"{a} is in {ca} with its capital in {pa}, and people speak {la}. {b} is in {cb}; its capital is {pb} and the main language is {lb}.",
    )


def compute_qa(r: random.Random) -> Pair:
    k = r.randrange(7)
    if k == 0:
        a, b = r.randint(2, 999), r.randint(2, 999)
        return r.choice(
            [(f"What is {a} + {b}?", f"{a} + {b} = {a + b}."), (f"Add {a} and {b}.", f"The sum is {a + b}.")]
        )
    if k == 1:
        a, b = r.randint(2, 99), r.randint(2, 99)
        return (f"What is {a} times {b}?", f"{a} x {b} = {a * b}.")
    if k == 2:
        p, n = r.choice([5, 10, 15, 20, 25, 50]), r.randint(2, 400) * 2
        return (f"What is {p}% of {n}?", f"{p}% of {n} is {p * n / 100:g}.")
    if k == 3:
        km = r.randint(1, 300)
        c = r.randint(-20, 40)
        return r.choice(
            [
                (f"Convert {km} km to miles.", f"{km} km is about {km * 0.621371:.1f} miles."),
                (f"What is {c} degrees Celsius in Fahrenheit?", f"{c} C is {c * 9 / 5 + 32:.1f} F."),
            ]
        )
    if k == 4:
        nums = r.sample(range(1, 100), r.randint(4, 8))
        return (
            f"Sort these numbers from smallest to largest: {', '.join(map(str, nums))}",
            ", ".join(map(str, sorted(nums))),
        )
    if k == 5:
        word = r.choice(
            ["banana", "library", "mountain", "elephant", "strawberry", "keyboard", "sunflower", "umbrella"]
        )
        letter = r.choice(sorted(set(word)))
        return r.choice(
            [
                (
                    f'How many times does the letter "{letter}" appear in "{word}"?',
                    f'The letter "{letter}" appears {word.count(letter)} time{"s" if word.count(letter) != 1 else ""} in "{word}".',
                ),
                (f'Spell "{word}" backwards.', f'"{word}" backwards is "{word[::-1]}".'),
            ]
        )
    a, x, b = r.randint(2, 9), r.randint(-10, 10), r.randint(-20, 20)
    return (
        f"Solve for x: {a}x + {b} = {a * x + b}",
        f"Subtract {b} from both sides to get {a}x = {a * x}, then divide by {a}: x = {x}.",
    )


def writing_qa(r: random.Random) -> Pair:
    k = r.randrange(4)
    if k == 0:
        topic, adj = r.choice(F.TOPICS), r.choice(F.ADJECTIVES)
        return (
            f"Write a short poem about {topic}.",
            f"Oh {topic}, so {adj} and wide,\nyou hold the hours I cannot hide;\nI come to you when days are long,\nand leave with something like a song.",
        )
    if k == 1:
        name = r.choice(F.NAMES)
        return (
            f"Write a thank-you note to my friend {name} for helping me move.",
            f"Dear {name},\nThank you so much for helping me move. I could not have done it without you, and the pizza afterwards was the best part. I owe you one!\nWarmly,\nMe",
        )
    if k == 2:
        prod, feat = r.choice(F.PRODUCTS)
        return (
            f"Write a one-line product description for a {prod}.",
            f"Meet the {r.choice(F.ADJECTIVES)} {prod} that {feat}.",
        )
    name, place, prob, res = r.choice(F.NAMES), r.choice(F.PLACES), r.choice(F.PROBLEMS), r.choice(F.RESOLUTIONS)
    return (
        f"Tell me a very short story set in {place}.",
        f"In {place}, {name} was having an ordinary day until {prob}. At first it seemed hopeless, but in the end {res}.",
    )


CODE = [
    (
        "reverses a string",
        "def reverse(s: str) -> str:\n    return s[::-1]",
        "Slicing with a step of -1 walks the string from the end to the start.",
    ),
    (
        "computes a factorial",
        "def factorial(n: int) -> int:\n    result = 1\n    for k in range(2, n + 1):\n        result *= k\n    return result",
        "It multiplies the numbers from 2 up to n.",
    ),
    (
        "checks whether a number is prime",
        "def is_prime(n: int) -> bool:\n    if n < 2:\n        return False\n    k = 2\n    while k * k <= n:\n        if n % k == 0:\n            return False\n        k += 1\n    return True",
        "It only needs to test divisors up to the square root of n.",
    ),
    (
        "counts the words in a sentence",
        "def count_words(text: str) -> int:\n    return len(text.split())",
        "str.split() splits on any whitespace.",
    ),
    (
        "returns the largest item of a list",
        "def largest(items: list[float]) -> float:\n    best = items[0]\n    for x in items[1:]:\n        if x > best:\n            best = x\n    return best",
        "It keeps the biggest value seen so far. Python's built-in max does the same.",
    ),
    (
        "removes duplicates from a list but keeps the order",
        "def unique(items: list) -> list:\n    seen = set()\n    return [x for x in items if not (x in seen or seen.add(x))]",
        "The set remembers what was already kept.",
    ),
    (
        "sums the even numbers in a list",
        "def sum_even(nums: list[int]) -> int:\n    return sum(n for n in nums if n % 2 == 0)",
        "The generator keeps only numbers divisible by two.",
    ),
    (
        "reads a text file and returns its lines",
        "def read_lines(path: str) -> list[str]:\n    with open(path, encoding='utf-8') as fh:\n        return fh.read().splitlines()",
        "The with block closes the file for you.",
    ),
]


def code_qa(r: random.Random) -> Pair:
    what, code, why = r.choice(CODE)
    ask = r.choice(
        [
            f"Write a Python function that {what}.",
            f"How can I write a function in Python that {what}?",
            f"Python: a function that {what}, please.",
        ]
    )
    return ask, f"```python\n{code}\n```\n{why}"


FOLLOW_UPS: list[tuple[str, Callable[[str], str]]] = [
    ("Thanks!", lambda a: "You're welcome! Let me know if there is anything else."),
    ("Can you make that shorter?", lambda a: a.split(". ")[0].rstrip(".") + "."),
    (
        "Great, thank you. Could you say it again in one sentence?",
        lambda a: a.replace("\n", " ").split(". ")[0].rstrip(".") + ".",
    ),
    (
        "Are you sure?",
        lambda a: "Yes. I double-checked it, and the answer above is correct to the best of my knowledge.",
    ),
    (
        "Why is that?",
        lambda a: "It follows from the basic facts involved. If you want, I can go through it step by step.",
    ),
]

GENERATORS: list[tuple[Callable[[random.Random], Pair], float]] = [
    (animal_qa, 0.12),
    (country_qa, 0.12),
    (concept_qa, 0.15),
    (howto_qa, 0.14),
    (compare_qa, 0.1),
    (compute_qa, 0.2),
    (writing_qa, 0.1),
    (code_qa, 0.07),
]


def make_chats(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` distinct chats: ~30% with a system prompt, ~25% with a second turn."""
    r = random.Random(seed)
    fns, weights = zip(*GENERATORS, strict=True)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        user, answer = r.choices(fns, weights)[0](r)
        msgs = []
        if r.random() < 0.3:
            msgs.append({"role": "system", "content": r.choice(F.SYSTEM_PROMPTS)})
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        if r.random() < 0.25:
            follow, reply = r.choice(FOLLOW_UPS)
            msgs += [{"role": "user", "content": follow}, {"role": "assistant", "content": reply(answer)}]
        key = json.dumps(msgs)
        if key not in seen:
            seen.add(key)
            out.append({"messages": msgs})
    return out


def _story(r: random.Random) -> str:
    name, other = r.sample(F.NAMES, 2)
    place, prob, res = r.choice(F.PLACES), r.choice(F.PROBLEMS), r.choice(F.RESOLUTIONS)
    adj = r.sample(F.ADJECTIVES, 2)
    return (
        f"{name} had lived near {place} for as long as anyone could remember. People described {name} as {adj[0]}, "
        f"and a little {adj[1]}. One morning {prob}. {name} went to find {other}, who always knew what to do. "
        f'"We cannot wait for someone else," {other} said. They spent the day asking neighbours, making plans and '
        f"trying things that did not work. By evening, {res}. Years later, {name} still liked to tell the story."
    )


def _encyclopedia(r: random.Random) -> str:
    k = r.randrange(3)
    if k == 0:
        name, kind, habitat, diet, fact = r.choice(F.ANIMALS)
        return (
            f"{_cap(name)} is a {kind}. It is found in {habitat}, where it feeds on {diet}. "
            f"Scientists have long studied the species; notably, {fact}. Like many animals, it is affected by "
            f"changes to its habitat, and conservation groups monitor its numbers closely."
        )
    if k == 1:
        name, continent, capital, language, known = r.choice(F.COUNTRIES)
        return (
            f"{name} is a country in {continent}. Its capital is {capital}, and the main language is {language}. "
            f"Visitors often come for {known}. The country has a long history, and its culture has been shaped "
            f"by trade, migration and its geography."
        )
    name, expl, analogy = r.choice(F.CONCEPTS)
    return (
        f"{_cap(name)} is {expl}. Teachers often describe it as {analogy}. The idea appears in many fields, and "
        f"understanding it makes a number of everyday observations easier to explain."
    )


def _recipe(r: random.Random) -> str:
    task, steps = r.choice(F.HOWTOS)
    return (
        f"How to {task}. "
        + " ".join(f"Step {i + 1}: {s}." for i, s in enumerate(steps))
        + " That is all there is to it."
    )


def _report(r: random.Random) -> str:
    city = r.choice(F.COUNTRIES)[2]
    t, rain = r.randint(-5, 35), r.randint(0, 90)
    return (
        f"Weather report for {city}. Temperatures will reach {t} degrees Celsius today, with a {rain} percent chance "
        f"of rain. {'Bring an umbrella.' if rain > 50 else 'It should stay mostly dry.'} Tomorrow looks "
        f"{r.choice(['similar', 'cooler', 'warmer', 'windier'])}, and the weekend is expected to be {r.choice(['sunny', 'cloudy', 'mixed', 'rainy'])}."
    )


def make_texts(n: int, seed: int) -> list[dict[str, Any]]:
    """`n` plain-text documents of 2-6 paragraphs (stories, encyclopedia entries, how-tos, reports)."""
    r = random.Random(seed + 1)
    kinds = [_story, _encyclopedia, _recipe, _report]
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        text = "\n\n".join(r.choice(kinds)(r) for _ in range(r.randint(2, 6)))
        if text not in seen:
            seen.add(text)
            out.append({"text": text})
    return out


def write_jsonl_gz(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as gzip-compressed JSONL (mtime fixed so the file is byte-reproducible)."""
    raw = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    atomic_write_bytes(path, gzip.compress(raw, mtime=0))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "corpus"))
    ap.add_argument("--n-chats", type=int, default=4000)
    ap.add_argument("--n-texts", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    write_jsonl_gz(out / "chat.jsonl.gz", make_chats(args.n_chats, args.seed))
    write_jsonl_gz(out / "text.jsonl.gz", make_texts(args.n_texts, args.seed))
    print(f"wrote {args.n_chats} chats and {args.n_texts} texts to {out}")


if __name__ == "__main__":
    main()
