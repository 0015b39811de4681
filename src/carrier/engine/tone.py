"""Tone: the relationship and the mood shape the final wording of a reply.

An LLM gets the relationship in its prompt; a Markov sentence does not know who it talks
to, so the same rules are applied to its words here: an angry bot is terse, a formal user
gets a formal answer, a casual one a casual answer, a friend is called by name.
"""

from __future__ import annotations

import random
import re

from carrier.engine.mood import Mood
from carrier.engine.relationships import Relationship

_CASUAL_TO_FORMAL = {
    "gonna": "going to",
    "wanna": "want to",
    "gotta": "have to",
    "kinda": "somewhat",
    "yeah": "yes",
    "yep": "yes",
    "yup": "yes",
    "nah": "no",
    "dunno": "do not know",
    "u": "you",
    "ur": "your",
    "ya": "you",
    "lol": "",
    "lmao": "",
    "haha": "",
    "omg": "",
    "tbh": "",
    "idk": "I do not know",
    "bro": "",
    "dude": "",
    "pls": "please",
    "thx": "thank you",
    "can't": "cannot",
    "won't": "will not",
    "don't": "do not",
    "i'm": "I am",
    "it's": "it is",
    "that's": "that is",
    "isn't": "is not",
    "doesn't": "does not",
    "didn't": "did not",
}
_WORD = re.compile(r"[A-Za-z']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_EMOTE = re.compile(r"(<a?:\w+:\d+>|:\w+:)")
TERSE_WORDS = 8


def terse(text: str) -> str:
    """First sentence, at most a handful of words, no flourish."""
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    first = _EMOTE.sub("", first)
    words = first.split()[:TERSE_WORDS]
    out = " ".join(words).rstrip(",;:!?…").rstrip(".")
    return (out or "No") + "."


def formal(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        replacement = _CASUAL_TO_FORMAL.get(word.lower())
        return word if replacement is None else replacement

    text = _EMOTE.sub("", _WORD.sub(swap, text))
    text = re.sub(r"!+", ".", text)
    text = re.sub(r"\s{2,}", " ", text).strip(" ,")
    if not text:
        return text
    text = text[0].upper() + text[1:]
    if text[-1] not in ".?":
        text += "."
    return text


def casual(text: str) -> str:
    text = text.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if text[:1].isupper() and not text[:2].isupper():
        text = text[0].lower() + text[1:]
    return text


def apply_tone(
    text: str, rel: Relationship, mood: Mood, user_name: str, rng: random.Random
) -> tuple[str, list[str]]:
    """The reworded text and the tone rules applied (shown by ``/why``)."""
    applied: list[str] = []
    if rel.is_angry or mood.anger >= 9:
        applied.append("terse (angry)")
        return terse(text), applied
    if rel.is_formal:
        text = formal(text)
        applied.append("formal")
    elif rel.is_casual:
        text = casual(text)
        applied.append("casual")
    if rel.rapport >= 7 and user_name and rng.random() < 0.5:
        text = f"{user_name}, {text[:1].lower() + text[1:] if not rel.is_formal else text}"
        applied.append("friendly address")
    return text, applied
