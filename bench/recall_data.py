"""Data for bench/recall.py: planted facts, their paraphrased questions, topical
distractors, and filler turns from real conversations (the chitchat dataset).

The chitchat-dataset 0.9.0 wheel (MIT) is fetched with `pip download --no-deps`, read as a
zip, and its `dataset.json` cached under the models cache folder; the package is never
installed or imported.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHITCHAT = "chitchat-dataset==0.9.0"
CHITCHAT_MEMBER = "chitchat_dataset/dataset.json"


@dataclass(frozen=True)
class Fact:
    statement: str  # what the user said, long ago
    ack: str  # the assistant's reply then
    question: str  # asked now, in other words
    answer: tuple[str, ...]  # any of these in the reply counts as right
    distractors: tuple[str, ...]  # same topic, different detail


FACTS: tuple[Fact, ...] = (
    Fact(
        "By the way, my sister's cat is called Pistachio.",
        "Pistachio is a lovely name for a cat!",
        "What was the name of my sister's pet?",
        ("pistachio",),
        ("My neighbour has a dog that barks all night.", "I might adopt a kitten next year."),
    ),
    Fact(
        "I parked the car on level 4 of the airport garage, spot 27B.",
        "Got it, level 4, spot 27B.",
        "Where did I leave my vehicle at the airport?",
        ("27b", "level 4"),
        ("The airport was really crowded this morning.", "My car needs new tyres soon."),
    ),
    Fact(
        "My wifi password at the cabin is maplesyrup88.",
        "Noted: the cabin wifi password is maplesyrup88.",
        "What's the network key for the internet at our cabin?",
        ("maplesyrup88",),
        ("The cabin is about two hours north of the city.", "Our internet at home is slow."),
    ),
    Fact(
        "My dentist appointment is on Thursday at 3:15 pm.",
        "Thursday at 3:15, I'll remember.",
        "When am I supposed to see the tooth doctor?",
        ("thursday", "3:15"),
        ("I hate going to the doctor.", "My brother is studying medicine."),
    ),
    Fact(
        "I'm allergic to hazelnuts, so keep that in mind for recipes.",
        "Understood, no hazelnuts in any recipe.",
        "Which ingredient must I avoid because of my allergy?",
        ("hazelnut",),
        ("I love baking cakes on Sundays.", "My friend is lactose intolerant."),
    ),
    Fact(
        "My grandmother was born in Tbilisi, Georgia.",
        "Tbilisi is a beautiful city.",
        "In which city did my granny come into the world?",
        ("tbilisi",),
        ("My grandfather loved fishing.", "I was born in a small town by the sea."),
    ),
    Fact(
        "The project deadline moved to the 14th of November.",
        "So the new deadline is November 14th.",
        "By what date do we now have to deliver the project?",
        ("14", "fourteenth"),
        ("The project kickoff was fun.", "My manager is on holiday next week."),
    ),
    Fact(
        "My favourite author is Ursula K. Le Guin.",
        "Great choice, her books are wonderful.",
        "Which writer do I like most?",
        ("le guin", "ursula"),
        ("I read a mystery novel last week.", "My book club meets on Mondays."),
    ),
    Fact(
        "My locker combination at the gym is 31-08-22.",
        "31-08-22, noted.",
        "What code opens my gym locker?",
        ("31-08-22", "31 08 22"),
        ("The gym was packed yesterday.", "I lost my bike lock key."),
    ),
    Fact(
        "Our team's standup meeting is in room Kestrel on the fifth floor.",
        "Room Kestrel, fifth floor.",
        "Which meeting room do we use for the daily standup?",
        ("kestrel",),
        ("The office coffee machine is broken.", "We have a retro every second Friday."),
    ),
    Fact(
        "My son's football coach is named Mr. Okonkwo.",
        "Mr. Okonkwo, got it.",
        "Who trains my boy's soccer team?",
        ("okonkwo",),
        ("My son loves playing video games.", "The football season starts in August."),
    ),
    Fact(
        "I keep the spare house key under the blue flowerpot by the back door.",
        "Under the blue flowerpot, understood.",
        "Where is the extra key to my home hidden?",
        ("flowerpot", "flower pot"),
        ("I painted the front door green.", "Our back garden needs weeding."),
    ),
    Fact(
        "My blood type is AB negative.",
        "AB negative is quite rare.",
        "What is my blood group?",
        ("ab negative", "ab-", "ab neg"),
        ("I donated to a charity last month.", "My cousin is a nurse."),
    ),
    Fact(
        "The recipe I liked used smoked paprika and saffron.",
        "Smoked paprika and saffron sound delicious together.",
        "Which spices were in that dish I enjoyed?",
        ("paprika", "saffron"),
        ("I tried a new Thai restaurant.", "My kitchen is too small."),
    ),
    Fact(
        "My flight to Lisbon leaves at 6:40 in the morning.",
        "An early 6:40 departure to Lisbon.",
        "What time does my plane to Portugal take off?",
        ("6:40",),
        ("I prefer window seats.", "Lisbon has great pastries."),
    ),
    Fact(
        "My bike was stolen, and the frame number is WTU-4471.",
        "Sorry to hear that. Frame number WTU-4471.",
        "What's the serial number of the bicycle that got taken?",
        ("wtu-4471", "wtu4471", "4471"),
        ("I ride to work when it's sunny.", "The police station is near the park."),
    ),
    Fact(
        "My landlord's name is Mrs. Abernathy.",
        "Mrs. Abernathy, noted.",
        "Who owns the apartment I rent?",
        ("abernathy",),
        ("My rent went up this year.", "The apartment has a small balcony."),
    ),
    Fact(
        "I planted lavender and rosemary in the left flower bed.",
        "Lavender and rosemary will smell lovely.",
        "Which herbs did I put in the garden bed on the left?",
        ("lavender", "rosemary"),
        ("The lawn needs mowing.", "My tomatoes got blight last summer."),
    ),
    Fact(
        "My daughter's piano teacher charges 35 euros per lesson.",
        "35 euros a lesson.",
        "How much does each of my kid's music classes cost?",
        ("35",),
        ("My daughter also likes drawing.", "Pianos are hard to tune."),
    ),
    Fact(
        "The name of my first boat was Sea Biscuit.",
        "Sea Biscuit is a fun name for a boat.",
        "What did I call the first vessel I owned?",
        ("sea biscuit", "seabiscuit"),
        ("I get seasick on ferries.", "The harbour is busy in summer."),
    ),
    Fact(
        "My insurance policy number is HX-2290-771.",
        "Policy HX-2290-771, noted.",
        "What is the reference of my insurance contract?",
        ("hx-2290-771", "2290-771", "2290"),
        ("Insurance is so expensive these days.", "I need to renew my passport."),
    ),
    Fact(
        "My best friend from school is called Priyanka and she lives in Leeds.",
        "Priyanka in Leeds, got it.",
        "What's the name of my closest childhood friend?",
        ("priyanka",),
        ("I met a new colleague today.", "School reunions make me nervous."),
    ),
    Fact(
        "I take my vitamin D supplement every morning with breakfast.",
        "Vitamin D with breakfast, a good habit.",
        "Which supplement do I take at the start of each day?",
        ("vitamin d",),
        ("I skipped breakfast today.", "My doctor told me to walk more."),
    ),
    Fact(
        "The wedding we're going to is at Harrowgate Manor.",
        "Harrowgate Manor sounds grand.",
        "At what venue is the marriage ceremony we're attending?",
        ("harrowgate",),
        ("I need a new suit.", "My cousin got engaged last year."),
    ),
)


def chitchat_file(cache_dir: Path) -> Path:
    """The dataset's JSON, extracted once from the wheel into `cache_dir`."""
    target = cache_dir / "chitchat-dataset-0.9.0.json"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", CHITCHAT, "-d", tmp],
            check=True,
        )
        (wheel,) = Path(tmp).glob("chitchat_dataset-0.9.0-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(CHITCHAT_MEMBER)
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def filler_exchanges(path: Path, limit: int = 4000, seed: int = 0) -> list[tuple[str, str]]:
    """(user, assistant) pairs from consecutive turns of real chats."""
    data = json.loads(path.read_text("utf-8"))
    rng = random.Random(seed)
    keys = sorted(data)
    rng.shuffle(keys)
    pairs: list[tuple[str, str]] = []
    for key in keys:
        turns = [" ".join(m["text"].strip() for m in turn) for turn in data[key]["messages"]]
        turns = [t for t in turns if t and len(t) < 600]
        for i in range(0, len(turns) - 1, 2):
            pairs.append((turns[i], turns[i + 1]))
        if len(pairs) >= limit:
            break
    return pairs[:limit]


@dataclass(frozen=True)
class Trial:
    fact: Fact
    messages: list[tuple[str, str]]  # (role, text), without the final question
    fact_index: int  # index of the fact's user message in `messages`


def make_trial(
    fact: Fact, filler: list[tuple[str, str]], n_exchanges: int, min_back: int, rng: random.Random
) -> Trial:
    """A conversation of `n_exchanges` exchanges; the fact at least `min_back` exchanges
    before the end, its distractors anywhere else."""
    chosen = rng.sample(filler, n_exchanges - 1 - len(fact.distractors))
    fact_at = rng.randrange(0, max(1, n_exchanges - min_back))
    exchanges: list[tuple[str, str]] = list(chosen)
    for distractor in fact.distractors:
        exchanges.insert(rng.randrange(0, len(exchanges) + 1), (distractor, "I see."))
    exchanges.insert(fact_at, (fact.statement, fact.ack))
    messages = [
        (role, text)
        for pair in exchanges
        for role, text in zip(("user", "assistant"), pair, strict=True)
    ]
    return Trial(fact, messages, 2 * fact_at)
