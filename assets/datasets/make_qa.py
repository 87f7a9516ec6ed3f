"""Write the bundled extractive question-answering example, ``qa-train.csv``: fact cards generated from templates.

Made for LLM Lab (no outside text): short "fact cards" about invented entities (people, towns, ships, bridges,
companies, festivals, zoo animals, recipes), whose names are assembled from syllables or drawn from hand-written
lists, are written with several sentence templates per fact, some of them stating distractor values (a second year,
a second person, a second number), so that a model has to read the context rather than recall facts or pick the
only number. Each row asks about one attribute; the answer is a verbatim span of the context, located by
construction (``context[answer_start:answer_start + len(answer)] == answer``). ``qa-test.csv`` beside it was written
by hand, with other topics and wording, so the held-out score measures a change of wording and not only of which
pieces were drawn. See assets/README.md.

    python assets/datasets/make_qa.py            # rewrites qa-train.csv (800 rows, seed 0)
    python assets/datasets/make_qa.py --rows 4000 --out /tmp/qa-4000.csv
"""
from __future__ import annotations

import argparse
import csv
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
COLUMNS = ("question", "context", "answer", "answer_start")

# --- invented names ---------------------------------------------------------------------------------------------

ONSETS = ("b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kl", "l", "m", "n", "p", "r", "s", "st", "t", "tr", "v",
          "th", "w", "j", "c", "cl", "fr")
VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ea", "ou", "y")
CODAS = ("", "", "", "", "n", "r", "l", "m", "s", "nd", "rk", "st", "ll", "v")
PLACE_ENDS = ("ford", "wick", "mere", "holm", "by", "ton", "dale", "moor", "stead", "haven", "field", "bury", "gate")
SURNAME_ENDS = ("", "", "en", "ard", "ley", "ow", "ick", "son", "er", "ing")
AVOID = ("rape", "nazi", "slut", "kill", "dead", "hate", "damn", "hell", "porn", "anal", "cum", "sex", "fag", "tit",
         "nig", "poo", "ass", "shit", "fuck", "dick", "cock", "cunt", "wank", "bum", "god", "jesus", "die", "death")
CLUSTER = re.compile(r"[^aeiouy ]{3}|(.)\1\1")  # three consonants (or one letter three times) in a row: redrawn
FEMALE = ("Alvena", "Brisa", "Corla", "Danae", "Elsbet", "Fenna", "Gisla", "Hestia", "Ilvy", "Jorunn", "Kesia", "Liora",
          "Maelis", "Nessa", "Odila", "Perrin", "Quilla", "Rosalind", "Sevra", "Tamsin", "Ulla", "Verity", "Wenna",
          "Ysolde", "Zelie", "Marit", "Aldis", "Brenna")
MALE = ("Aldo", "Bertram", "Casimir", "Dorran", "Emrys", "Fennick", "Gideon", "Halvard", "Ivo", "Jarek", "Kester",
        "Lorcan", "Matthias", "Niall", "Osric", "Piet", "Quentin", "Ruben", "Sander", "Tobiah", "Ulric", "Valen",
        "Wystan", "Yannick", "Anselm", "Bastian", "Corin", "Edric")


class Namer:
    """Invented names from one seeded generator; ``used`` keeps the names of one card distinct."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def _fresh(self, make: Callable[[], str]) -> str:
        while True:
            name = make()
            low = name.lower()
            if name not in self.used and not any(bad in low for bad in AVOID):
                self.used.add(name)
                return name

    def _word(self, lo: int = 2, hi: int = 2, ends: tuple[str, ...] = ("",)) -> str:
        rng = self.rng
        while True:
            parts = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(rng.randint(lo, hi))]
            word = "".join(parts) + rng.choice(ends)
            if not CLUSTER.search(word):
                return word.capitalize()

    def word(self, lo: int = 2, hi: int = 2) -> str:
        return self._fresh(lambda: self._word(lo, hi))

    def place(self) -> str:
        def make() -> str:
            if self.rng.random() < 0.6:
                return self._word(1, 1, PLACE_ENDS)
            return self._word(2, 2)
        return self._fresh(make)

    def surname(self) -> str:
        return self._fresh(self._surname)

    def _surname(self) -> str:
        return self._word(2, 2) if self.rng.random() < 0.4 else self._word(1, 1, SURNAME_ENDS)

    def person(self, female: bool | None = None) -> str:
        if female is None:
            female = self.rng.random() < 0.5
        first = self.rng.choice(FEMALE if female else MALE)
        return self._fresh(lambda: f"{first} {self._surname()}")


def pronouns(kind: str) -> dict[str, str]:
    """Fields for referring back to the entity: ``It`` starts a sentence, ``its`` is possessive, ``obj`` an object."""
    if kind == "she":
        return dict(It="She", it="she", Its="Her", its="her", obj="her")
    if kind == "he":
        return dict(It="He", it="he", Its="His", its="his", obj="him")
    return dict(It="It", it="it", Its="Its", its="its", obj="it")


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def years(rng: random.Random, n: int, lo: int, hi: int) -> list[int]:
    """``n`` distinct years in [lo, hi], in increasing order."""
    return sorted(rng.sample(range(lo, hi + 1), n))


# --- the kinds of entity: how to draw one, how to state its facts, how to ask about them ------------------------


@dataclass(frozen=True)
class Kind:
    make: Callable[[Namer], dict[str, str]]
    intros: tuple[str, ...]  # the first sentence: always names the entity ({name}); may state attributes too
    facts: tuple[tuple[str, ...], ...]  # each fact: templates stating the same fields, one of which is drawn
    questions: dict[str, tuple[str, ...]]  # the attribute asked -> wordings of the question


ADJECTIVES = ("Copper", "Silent", "Salt", "Winter", "Hollow", "Paper", "Amber", "Crooked", "Seventh", "Glass", "Iron",
              "Patient", "Borrowed", "Last")
NOUNS = ("Orchard", "Lantern", "Harbour", "Staircase", "Meadow", "Compass", "Kettle", "Garden", "Tower", "Letter",
         "Bell", "Ferry", "Orchid", "Journey")
MACHINES = ("a tide clock", "a clock with twelve bells", "a pocket sundial", "a water clock", "a wind-powered mill",
            "a floating crane", "a steam plough", "a canal lock", "a folding ladder", "a self-winding lamp",
            "a silent bicycle bell", "a rain gauge", "a glass beehive", "a hand-cranked loom")
# profession, past tense, base form, past participle, what kind of work
PROFESSIONS = (
    ("clockmaker", "built", "build", "built", "machine"),
    ("poet", "wrote", "write", "written", "title"),
    ("novelist", "wrote", "write", "written", "title"),
    ("botanist", "discovered", "discover", "discovered", "plant"),
    ("astronomer", "discovered", "discover", "discovered", "comet"),
    ("engineer", "designed", "design", "designed", "machine"),
    ("composer", "wrote", "write", "written", "suite"),
    ("inventor", "invented", "invent", "invented", "machine"),
    ("architect", "designed", "design", "designed", "building"),
    ("mapmaker", "drew", "draw", "drawn", "map"),
)
OTHER_TRADES = ("baker", "weaver", "schoolteacher", "boatbuilder", "carpenter", "doctor", "printer", "sailor")


def _work(namer: Namer, what: str) -> str:
    rng = namer.rng
    if what == "machine":
        return rng.choice(MACHINES)
    if what == "title":
        return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    if what == "plant":
        return f"the {namer.word()} {rng.choice(('lily', 'orchid', 'fern', 'rose', 'moss', 'thistle'))}"
    if what == "comet":
        return f"the {namer.word()} Comet"
    if what == "suite":
        return f"the {namer.place()} Suite"
    if what == "building":
        return f"the {namer.word()} {rng.choice(('Library', 'Town Hall', 'Tower', 'Market Hall', 'Theatre'))}"
    return f"the first map of {namer.place()}"


def make_person(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    female = rng.random() < 0.5
    profession, verb, verb_base, verb_pp, what = rng.choice(PROFESSIONS)
    born = rng.randint(1600, 1920)
    died = born + rng.randint(40, 95)
    moved = born + rng.randint(18, died - born - 5)
    name = namer.person(female)
    return dict(pronouns("she" if female else "he"), name=name, first=name.split()[0], born=str(born),
                hometown=namer.place(), profession=profession, a=article(profession), verb=verb, verb_base=verb_base,
                verb_pp=verb_pp, work=_work(namer, what), mentor=namer.person(), moved=str(moved), city=namer.place(),
                sibling=namer.person(), trade=rng.choice(OTHER_TRADES), died=str(died))


PERSON = Kind(
    make_person,
    intros=(
        "{name} was {a} {profession} from {hometown}.",
        "{name} was born in {born} in the town of {hometown}.",
        "Few people outside {hometown} have heard of {name}.",
        "{name} worked as {a} {profession} for most of {its} life.",
        "The {profession} {name} is still remembered in {hometown}.",
    ),
    facts=(
        ("{It} was born in {born}.", "{name} was born in the year {born}.",
         "Records give {its} year of birth as {born}.", "{It} came into the world in {born}, a cold year."),
        ("{It} grew up in {hometown}.", "{Its} home town was {hometown}.",
         "{name} spent {its} childhood in {hometown}, near the market."),
        ("{It} trained as {a} {profession}.", "By trade, {name} was {a} {profession}.",
         "{It} earned a living as {a} {profession}."),
        ("{It} {verb} {work}.", "{name} is best known for having {verb_pp} {work}.",
         "Among other things, {it} {verb} {work}.", "{Its} best-known work: {it} {verb} {work}."),
        ("{It} learnt the trade from {mentor}.", "{Its} teacher was {mentor}.",
         "{name} was taught by {mentor}, who lived next door.", "As a child, {it} studied under {mentor}."),
        ("In {moved}, {it} moved to {city}.", "{It} moved to {city} in {moved}.",
         "{name} left for {city} in {moved} and rarely came back."),
        ("{Its} younger sibling, {sibling}, became a {trade}.", "{It} shared a workshop with {sibling}, a {trade}."),
        ("{It} died in {died}.", "{name} died in {died}, still at work."),
    ),
    questions=dict(
        name=("Who {verb} {work}?", "Which {profession} {verb} {work}?", "Who was taught by {mentor}?"),
        born=("When was {name} born?", "In which year was {name} born?", "What is {name}'s year of birth?"),
        hometown=("Where did {name} grow up?", "What was {name}'s home town?",
                  "In which town did {name} spend {its} childhood?"),
        profession=("What was {name}'s profession?", "What did {name} do for a living?",
                    "What trade did {name} practise?"),
        work=("What did {name} {verb_base}?", "What did {first} {verb_base}?",
              "According to the text, what did {name} {verb_base}?"),
        mentor=("Who taught {name}?", "Who was {name}'s teacher?", "From whom did {name} learn the trade?"),
    ),
)

KNOWN_FOR = ("its glass bells", "a spring cheese market", "its painted boats", "its old salt mines",
             "a clock tower with no hands", "its goat races", "its blue roof tiles", "a library in a windmill",
             "its plum brandy", "a choir of two hundred voices", "its stone lions", "its winter ice fair")


def make_town(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    founded, railway = rng.randint(880, 1800), rng.randint(1830, 1960)
    return dict(pronouns("it"), name=namer.place(), river=namer.word(), region=f"the {namer.word()} Valley",
                founded=str(founded), founder=namer.person(), population=f"{rng.randrange(800, 90000, 100):,}",
                known=rng.choice(KNOWN_FOR), railway=str(railway), neighbour=namer.place(),
                distance=f"{rng.randint(3, 60)} kilometres", mayor=namer.person())


TOWN = Kind(
    make_town,
    intros=(
        "{name} is a small town on the {river}.",
        "{name} is a town in {region}.",
        "{name} lies on the banks of the {river}, in {region}.",
        "The town of {name} was founded in {founded}.",
        "{name} is a market town known for {known}.",
    ),
    facts=(
        ("{It} was founded in {founded}.", "The town dates from {founded}.",
         "{name} was founded in the year {founded}."),
        ("{Its} founder was {founder}.", "The first house there was built by {founder}.",
         "According to the town records, {founder} founded it."),
        ("The {river} flows through the middle of the town.", "The town stands where the {river} meets the sea.",
         "{It} is built on both banks of the {river}."),
        ("About {population} people live there today.", "{It} has a population of {population}.",
         "Today the town has {population} inhabitants."),
        ("{name} is known for {known}.", "Visitors come for {known}.", "The town is famous for {known}."),
        ("{It} lies in {region}.",),
        ("The railway reached {name} in {railway}.", "In {railway}, the railway arrived."),
        ("The nearest town, {neighbour}, is {distance} away.", "{neighbour} lies {distance} downstream."),
        ("The current mayor is {mayor}.", "{mayor} has been mayor since the last election."),
    ),
    questions=dict(
        river=("Which river flows through {name}?", "On which river does {name} stand?", "What river is {name} on?"),
        founded=("When was {name} founded?", "In which year was {name} founded?", "What year was {name} founded?"),
        founder=("Who founded {name}?", "Who was the founder of {name}?", "Who is named as the founder of {name}?"),
        population=("How many people live in {name}?", "What is the population of {name}?",
                    "How many inhabitants does {name} have?"),
        known=("What is {name} known for?", "What is {name} famous for?", "Why do visitors come to {name}?"),
        name=("Which town is known for {known}?", "Which town was founded by {founder}?"),
    ),
)

SHIP_ADJECTIVES = ("Morning", "Silver", "Patient", "Northern", "Little", "Brave", "Quiet", "Golden", "Restless",
                   "Faithful", "Evening", "Second")
SHIP_NOUNS = ("Tassel", "Heron", "Lark", "Comet", "Promise", "Otter", "Wren", "Anchor", "Thistle", "Lantern", "Gull",
              "Pilgrim")
SHIP_TYPES = ("schooner", "steamship", "ferry", "river barge", "brig", "whaler", "paddle steamer", "fishing boat")
CARGOES = ("salt and timber", "wool", "coal", "oranges", "passengers and mail", "tea and spices", "iron ore", "grain",
           "barrels of herring", "roof slates", "cattle")


def make_ship(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    launched, refit = years(rng, 2, 1780, 1960)
    if rng.random() < 0.7:
        name = f"{rng.choice(SHIP_ADJECTIVES)} {rng.choice(SHIP_NOUNS)}"
    else:
        name = namer.word(2, 2)
    length = rng.randint(12, 140)
    crew = rng.randint(4, 80)
    return dict(pronouns("she"), name=name, shiptype=rng.choice(SHIP_TYPES), launched=str(launched),
                captain=namer.person(), port=namer.place(), length=f"{length} metres", cargo=rng.choice(CARGOES),
                crew=str(crew), refit=str(refit), mate=namer.person(), tonnage=str(rng.randint(crew + 20, 3000)))


SHIP = Kind(
    make_ship,
    intros=(
        "The {name} was a {shiptype} launched in {launched}.",
        "The {shiptype} {name} sailed out of {port}.",
        "The {name} was a {shiptype} from {port}.",
        "The {name} was a {shiptype} of {length}.",
        "Old sailors still talk about the {name}, a {shiptype}.",
    ),
    facts=(
        ("The ship was launched in {launched}.", "{It} first went to sea in {launched}.",
         "{It} was launched in {launched} from a yard near the harbour."),
        ("{Its} captain was {captain}.", "{captain} commanded the ship for many years.",
         "The ship was captained by {captain}."),
        ("{Its} home port was {port}.", "The ship was registered in {port}.", "{It} sailed out of {port}."),
        ("The ship was {length} long.", "{It} measured {length} from bow to stern."),
        ("{It} carried {cargo}.", "{Its} usual cargo was {cargo}.", "The ship mostly carried {cargo} along the coast."),
        ("{It} had a crew of {crew}.", "A crew of {crew} sailed with {obj}.", "{crew} sailors worked on board."),
        ("{It} was refitted in {refit}.", "In {refit}, {its} engines were replaced."),
        ("{mate} served as first mate.", "The first mate, {mate}, kept the log."),
        ("{It} could carry {tonnage} tonnes.", "Fully loaded, the ship held {tonnage} tonnes."),
    ),
    questions=dict(
        launched=("When was the {name} launched?", "In which year was the {name} launched?",
                  "What year did the {name} first go to sea?"),
        captain=("Who was the captain of the {name}?", "Who commanded the {name}?", "Who captained the {name}?"),
        port=("What was the home port of the {name}?", "Where was the {name} registered?",
              "Which port did the {name} sail from?"),
        length=("How long was the {name}?", "What was the length of the {name}?"),
        cargo=("What did the {name} carry?", "What cargo did the {name} carry?"),
        crew=("How many sailors were in the crew of the {name}?", "How large was the crew of the {name}?",
              "How many people crewed the {name}?"),
    ),
)

MATERIALS = ("red sandstone", "grey granite", "oak timber", "cast iron", "brick", "limestone", "white marble",
             "steel cables", "dark basalt")


def _material(rng: random.Random) -> dict[str, str]:
    material = rng.choice(MATERIALS)
    return dict(material=material, a=article(material))


def make_bridge(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    opened, repaired = years(rng, 2, 1200, 1990)
    length = rng.randint(20, 900)
    return dict(pronouns("it"), name=f"{namer.word(1, 2)} Bridge", river=namer.word(), opened=str(opened),
                designer=namer.person(), **_material(rng), arches=str(rng.randint(2, 14)),
                length=f"{length} metres", repaired=str(repaired), width=f"{rng.randint(3, 12)} metres",
                mason=namer.person())


BRIDGE = Kind(
    make_bridge,
    intros=(
        "The {name} crosses the {river}.",
        "The {name} was opened in {opened}.",
        "The {name} is {a} {material} bridge over the {river}.",
        "Travellers on the old road cross the {name}.",
    ),
    facts=(
        ("{It} spans the {river}.", "The bridge crosses the {river} just below the old mill."),
        ("{It} opened in {opened}.", "The bridge was opened to traffic in {opened}.",
         "The first carts crossed it in {opened}."),
        ("{It} was designed by {designer}.", "{designer} drew the plans for the bridge.",
         "The engineer {designer} designed it."),
        ("{It} is built of {material}.", "The builders used {material}.", "{It} is made of {material}."),
        ("{It} rests on {arches} arches.", "The bridge has {arches} arches."),
        ("The bridge is {length} long.", "{It} runs for {length} from bank to bank."),
        ("{It} was repaired after a flood in {repaired}.", "In {repaired}, part of the bridge was rebuilt."),
        ("The road across it is {width} wide.", "{It} is only {width} wide, so carts must take turns."),
        ("The first stone was laid by {mason}, a local mason.", "{mason} carved the names on its parapet."),
    ),
    questions=dict(
        river=("Which river does the {name} cross?", "What river does the {name} span?",
               "Over which river is the {name} built?"),
        opened=("When was the {name} opened?", "In which year did the {name} open?",
                "In what year did the {name} open to traffic?"),
        designer=("Who designed the {name}?", "Who drew the plans for the {name}?",
                  "Which engineer designed the {name}?"),
        material=("What is the {name} made of?", "What material was used to build the {name}?"),
        arches=("How many arches does the {name} have?", "On how many arches does the {name} rest?"),
        length=("How long is the {name}?", "What is the length of the {name}?"),
    ),
)

PRODUCTS = ("copper kettles", "wooden toys", "rope and sailcloth", "bicycle bells", "glass marbles",
            "woollen blankets", "garden tools", "paper lanterns", "barometers", "leather saddles", "pocket knives",
            "tin whistles")


def make_company(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    founded, factory, since = years(rng, 3, 1750, 2015)
    style = rng.randrange(3)
    if style == 0:
        name = f"{namer.surname()} and Sons"
    elif style == 1:
        name = f"{namer.word()} Works"
    else:
        name = f"{namer.word()} Trading Company"
    return dict(pronouns("it"), name=name, founder=namer.person(), founded=str(founded), city=namer.place(),
                product=rng.choice(PRODUCTS), employees=str(rng.randint(6, 4000)), factory=str(factory),
                since=str(since), manager=namer.person(), sold=f"{rng.randrange(1000, 500000, 500):,}")


COMPANY = Kind(
    make_company,
    intros=(
        "{name} is a company based in {city}.",
        "{name} was founded in {founded} by {founder}.",
        "{name} makes {product}.",
        "{name} is a family firm.",
    ),
    facts=(
        ("{It} was started by {founder}.", "{founder} founded the firm with borrowed money.",
         "The company's founder was {founder}."),
        ("{It} was founded in {founded}.", "The firm was set up in {founded}.",
         "The company opened its doors in {founded}."),
        ("{Its} workshops are in {city}.", "The firm is based in {city}.", "The company has always been in {city}."),
        ("{It} makes {product}.", "The firm is best known for {product}.", "{Its} main product is {product}."),
        ("{It} employs {employees} people.", "About {employees} people work there.",
         "The company has a staff of {employees}."),
        ("A second factory opened in {factory}.", "In {factory}, it opened a second factory."),
        ("Since {since}, the firm has been run by {manager}.", "{manager} has managed it since {since}."),
        ("Last year it sold {sold} pieces.", "{It} sold {sold} pieces last year."),
    ),
    questions=dict(
        founder=("Who founded {name}?", "Who started {name}?", "Who was the founder of {name}?"),
        founded=("When was {name} founded?", "In which year was {name} set up?", "What year was {name} founded?"),
        city=("Where is {name} based?", "In which city is {name} located?", "Where are the workshops of {name}?"),
        product=("What does {name} make?", "What is the main product of {name}?", "What does {name} sell?"),
        employees=("How many people work at {name}?", "How many employees does {name} have?",
                   "How large is the staff of {name}?"),
        name=("Which company makes {product}?", "Which firm was founded by {founder}?"),
    ),
)

FESTIVAL_TYPES = ("Lantern Festival", "Harvest Fair", "Kite Festival", "Cheese Fair", "Boat Festival", "Music Week",
                  "Apple Fair", "Snow Festival", "Bread Festival", "Fire Night")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
ACTIVITIES = ("a race of paper boats", "a night parade with lanterns", "a contest for the largest pumpkin",
              "a tug of war across the river", "the crowning of the cheese king", "a kite-flying contest",
              "a bonfire on the hill", "a long table dinner", "a brass band contest", "a pancake race")


def make_festival(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    began, cancelled = years(rng, 2, 1600, 2020)
    return dict(pronouns("it"), name=f"{namer.word()} {rng.choice(FESTIVAL_TYPES)}", town=namer.place(),
                month=rng.choice(MONTHS), began=str(began), visitors=f"{rng.randrange(300, 80000, 100):,}",
                activity=rng.choice(ACTIVITIES), organiser=namer.person(), cancelled=str(cancelled),
                guest=namer.person(), days=str(rng.randint(2, 9)))


FESTIVAL = Kind(
    make_festival,
    intros=(
        "The {name} takes place every {month} in {town}.",
        "The {name} is held each year in {town}.",
        "The {name} was first held in {began}.",
        "Every year, the {name} fills the streets with music.",
    ),
    facts=(
        ("{It} is held in {town}.", "The festival takes place in the streets of {town}."),
        ("{It} takes place every {month}.", "The festival is held each {month}.", "{It} always happens in {month}."),
        ("{It} was first held in {began}.", "The first festival took place in {began}.",
         "The tradition began in {began}."),
        ("About {visitors} visitors come each year.", "{It} draws some {visitors} visitors.",
         "Around {visitors} people attend."),
        ("The highlight is {activity}.", "The main event is {activity}.", "People come mostly for {activity}."),
        ("{It} is organised by {organiser}.", "{organiser} has run the festival for years.",
         "The organiser is {organiser}."),
        ("In {cancelled}, it was cancelled because of floods.", "{It} was not held in {cancelled}."),
        ("Last year it was opened by {guest}.", "{guest} gave the opening speech last year."),
        ("{It} lasts {days} days.", "The festival goes on for {days} days."),
    ),
    questions=dict(
        town=("Where is the {name} held?", "In which town does the {name} take place?"),
        month=("In which month is the {name} held?", "When does the {name} take place each year?",
               "Which month does the {name} happen in?"),
        began=("When was the {name} first held?", "In which year did the {name} begin?",
               "What year was the first {name}?"),
        visitors=("How many visitors does the {name} draw?", "How many people attend the {name}?",
                  "About how many visitors come to the {name} each year?"),
        activity=("What is the main event of the {name}?", "What is the highlight of the {name}?",
                  "What do people come to the {name} for?"),
        organiser=("Who organises the {name}?", "Who runs the {name}?", "Who is the organiser of the {name}?"),
    ),
)

# species, weight range in kilograms, foods
SPECIES = (
    ("otter", (5, 14), ("frozen fish", "raw herring", "river crabs")),
    ("giraffe", (550, 1200), ("acacia leaves", "sliced carrots", "fresh clover")),
    ("tortoise", (20, 250), ("dandelion leaves", "ripe tomatoes", "sliced melon")),
    ("red panda", (3, 6), ("bamboo shoots", "sweet apples", "ripe berries")),
    ("snow leopard", (25, 55), ("chicken legs", "raw beef", "boiled eggs")),
    ("camel", (300, 600), ("dry hay", "sweet apples", "barley bread")),
    ("flamingo", (2, 4), ("pink shrimp", "soaked pellets", "small snails")),
    ("sea lion", (80, 300), ("frozen fish", "raw herring", "whole squid")),
    ("elephant", (2500, 6000), ("ripe bananas", "whole pumpkins", "sugar cane")),
    ("tapir", (150, 320), ("ripe bananas", "sliced melon", "fresh clover")),
    ("lemur", (2, 4), ("ripe figs", "sweet apples", "boiled eggs")),
    ("penguin", (3, 30), ("frozen fish", "small sprats", "raw herring")),
)


def make_animal(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    species, (lo, hi), foods = rng.choice(SPECIES)
    born, arrived = years(rng, 2, 1990, 2024)
    female = rng.random() < 0.5
    zoo = f"{namer.place()} Zoo" if rng.random() < 0.6 else f"the {namer.place()} Animal Park"
    return dict(pronouns("she" if female else "he"), name=namer.word(2, 2), species=species, a=article(species),
                zoo=zoo, arrived=str(arrived), weight=f"{rng.randint(lo, hi)} kilograms", food=rng.choice(foods),
                keeper=namer.person(), born=str(born), sibling=namer.word(2, 2), mates=str(rng.randint(2, 12)))


ANIMAL = Kind(
    make_animal,
    intros=(
        "{name} is {a} {species} at {zoo}.",
        "{name} the {species} arrived at {zoo} in {arrived}.",
        "Visitors to {zoo} often ask to see {name}.",
        "Everyone at the zoo knows {name}.",
    ),
    facts=(
        ("{name} is {a} {species}.", "{It} is {a} {species} with a loud voice.", "{It} is the zoo's only {species}."),
        ("{It} lives at {zoo}.", "{Its} home is {zoo}.", "{It} has lived at {zoo} for years."),
        ("{It} came to the zoo in {arrived}.", "{name} arrived in {arrived}.",
         "{It} was brought to the zoo in {arrived}."),
        ("{It} weighs {weight}.", "At the last check-up {it} weighed {weight}."),
        ("{Its} favourite food is {food}.", "{It} loves {food}.", "The keepers reward {obj} with {food}."),
        ("{Its} keeper is {keeper}.", "{keeper} looks after {obj}.", "{It} is cared for by {keeper}."),
        ("{It} was born in {born} at another zoo.", "{name} was born in {born}."),
        ("{Its} twin, {sibling}, lives far away.", "{name} has a twin called {sibling}."),
        ("{It} shares {its} enclosure with {mates} other animals.",
         "{mates} other animals live in the same enclosure."),
    ),
    questions=dict(
        species=("What kind of animal is {name}?", "What species is {name}?", "What animal is {name}?"),
        zoo=("Where does {name} live?", "At which zoo does {name} live?", "What is {name}'s home?"),
        arrived=("When did {name} arrive at the zoo?", "In which year did {name} come to the zoo?",
                 "What year was {name} brought to the zoo?"),
        weight=("How much does {name} weigh?", "What is {name}'s weight?"),
        food=("What is {name}'s favourite food?", "What does {name} love to eat?", "What food does {name} like best?"),
        keeper=("Who is {name}'s keeper?", "Who looks after {name}?", "Who cares for {name}?"),
    ),
)

DISHES = ("pie", "stew", "flatbread", "soup", "cake", "dumpling dish", "pudding", "baked dish", "bread")
INGREDIENTS = ("red lentils", "smoked fish", "sweet potatoes", "barley", "chestnuts", "goat cheese", "green apples",
               "white beans", "mushrooms", "pumpkin", "rye flour", "cabbage", "onions and leeks")
SIDES = ("rye bread", "sour cream", "pickled beets", "a green salad", "boiled potatoes", "honey butter",
         "a glass of cider", "rice", "fried onions")


def make_recipe(namer: Namer) -> dict[str, str]:
    rng = namer.rng
    time, rest = rng.randrange(35, 181, 5), rng.randrange(5, 31, 5)
    return dict(pronouns("it"), name=namer.word(2, 2), dish=rng.choice(DISHES), ingredient=rng.choice(INGREDIENTS),
                time=f"{time} minutes", temp=f"{rng.randrange(140, 241, 10)} degrees", origin=namer.place(),
                served=rng.choice(SIDES), creator=namer.person(), serves=str(rng.randint(2, 12)),
                rest=f"{rest} minutes", written=str(rng.randint(1700, 2000)))


RECIPE = Kind(
    make_recipe,
    intros=(
        "{name} is a {dish} from {origin}.",
        "{name} is a simple {dish} made with {ingredient}.",
        "The recipe for {name} comes from {origin}.",
        "{name} is a {dish} that families cook on holidays.",
    ),
    facts=(
        ("The main ingredient is {ingredient}.", "{It} is made mostly from {ingredient}.",
         "{Its} base is {ingredient}."),
        ("{It} bakes for {time}.", "Cook it for {time}.", "The dish needs {time} in the oven."),
        ("The oven should be at {temp}.", "Bake it at {temp}.", "Heat the oven to {temp} first."),
        ("{It} comes from {origin}.", "The recipe was first cooked in {origin}."),
        ("{It} is served with {served}.", "Eat it with {served}.", "People usually serve it with {served}."),
        ("The recipe was invented by {creator}.", "{creator} first cooked it for a wedding.",
         "{creator} created the recipe."),
        ("One dish feeds {serves} people.", "The recipe serves {serves}."),
        ("Leave it to rest for {rest} before serving.", "Let it cool for {rest}."),
        ("The recipe was first written down in {written}.", "In {written}, a cookbook printed the recipe."),
    ),
    questions=dict(
        ingredient=("What is the main ingredient of {name}?", "What is {name} made from?",
                    "What is the base of {name}?"),
        time=("How long does {name} cook?", "For how long should {name} be cooked?",
              "How long does {name} need in the oven?"),
        temp=("At what temperature is {name} baked?", "How hot should the oven be for {name}?"),
        origin=("Where does {name} come from?", "Which town does {name} come from?"),
        served=("What is {name} served with?", "What do people eat {name} with?"),
        creator=("Who invented {name}?", "Who created the recipe for {name}?"),
    ),
)

KINDS: dict[str, Kind] = dict(person=PERSON, town=TOWN, ship=SHIP, bridge=BRIDGE, company=COMPANY, festival=FESTIVAL,
                              animal=ANIMAL, recipe=RECIPE)
# fields that refer to the entity or dress a sentence; every other field is a fact stated at most once per context
REFS = frozenset(("name", "first", "a", "It", "it", "Its", "its", "obj", "verb", "verb_base", "verb_pp", "shiptype",
                  "dish"))


# --- assembling rows --------------------------------------------------------------------------------------------


def fields(template: str) -> tuple[str, ...]:
    return tuple(f for _, f, _, _ in string.Formatter().parse(template) if f is not None)


def stated(template: str) -> frozenset[str]:
    return frozenset(fields(template)) - REFS


def render(template: str, values: dict[str, str]) -> tuple[str, dict[str, int]]:
    """The sentence, and where (in it) each field first appears."""
    out, where, pos = [], {}, 0
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(literal)
        pos += len(literal)
        if field is not None:
            where.setdefault(field, pos)
            out.append(values[field])
            pos += len(values[field])
    return "".join(out), where


def _check_kinds() -> None:
    for kind_name, kind in KINDS.items():
        assert all("name" in fields(t) for t in kind.intros), kind_name
        for fact in kind.facts:
            assert len({stated(t) for t in fact}) == 1, fact  # the templates of a fact state the same fields
        for attr, wordings in kind.questions.items():
            assert 2 <= len(wordings) <= 4, (kind_name, attr)
            assert attr == "name" or any(attr in stated(f[0]) for f in kind.facts), (kind_name, attr)


def card(rng: random.Random, kind: Kind) -> tuple[str, str, str, int, str] | None:
    """One (question, context, answer, answer_start, attribute), or None where the draw does not fit."""
    values = kind.make(Namer(rng))
    attr = rng.choice(list(kind.questions))
    question = rng.choice(kind.questions[attr])
    needed = (stated(question) | {attr}) - {"name"}
    intro = rng.choice(kind.intros)
    facts = list(kind.facts)
    rng.shuffle(facts)
    chosen, covered = [], set(stated(intro))
    for field in sorted(needed - covered):  # the facts the question needs first, then others up to the size
        options = [f for f in facts if field in stated(f[0]) and not stated(f[0]) & covered]
        if not options:
            return None
        fact = rng.choice(options)
        chosen.append(fact)
        covered |= stated(fact[0])
    size = rng.randint(2, 6)
    for fact in facts:
        if 1 + len(chosen) >= size:
            break
        if fact not in chosen and not stated(fact[0]) & covered:
            chosen.append(fact)
            covered |= stated(fact[0])
    rng.shuffle(chosen)
    sentences = [intro] + [rng.choice(fact) for fact in chosen]
    context, spans, pos = "", {}, 0
    for template in sentences:
        text, where = render(template, values)
        text = text[0].upper() + text[1:]
        for field, start in where.items():
            spans.setdefault(field, pos + start)
        context += text + " "
        pos += len(text) + 1
    context = context.rstrip()
    question = question.format(**values)
    answer, start = values[attr], spans[attr]
    assert context[start:start + len(answer)] == answer, (context, answer, start)
    if not 25 <= len(context.split()) <= 120 or not 1 <= len(answer.split()) <= 6:
        return None
    return question, context, answer, start, attr


def generate(rows: int, seed: int = 0) -> list[tuple[str, str, str, int, str, str]]:
    """``rows`` distinct (question, context, answer, answer_start, kind, attribute) rows, the kinds in equal
    shares (up to one), shuffled."""
    _check_kinds()
    rng = random.Random(seed)
    names = list(KINDS)
    out, seen = [], set()
    while len(out) < rows:
        kind = names[len(out) % len(names)]
        row = card(rng, KINDS[kind])
        if row is None:
            continue
        question, context, answer, start, attr = row
        if (question, context) not in seen:
            seen.add((question, context))
            out.append((question, context, answer, start, kind, attr))
    rng.shuffle(out)
    return out


def write(path: Path, rows: list[tuple[str, str, str, int, str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(row[:4] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "qa-train.csv")
    args = parser.parse_args()
    write(args.out, generate(args.rows, args.seed))


if __name__ == "__main__":
    main()
