"""The offline fact extractor: what people say about themselves, without an LLM.

Finds first-person self-statements in chat lines (name, age, location, job, likes and
dislikes, pets, plans, relationships) and turns each into a short third-person fact, e.g.
"i just moved to Lisbon lol" -> ("location", "lives in Lisbon").  Deliberately conservative:
questions, negations and hypotheticals ("if I lived in Paris") are skipped, because a wrong
memory is worse than a missing one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_VALUE_WORDS = 8
_STOP = r"(?=[.!?,;:]|\s+(?:and|but|because|so|lol|lmao|haha|though|btw|rn)\b|$)"
_VALUE = r"(?P<value>[^.!?,;:\n]{1,80}?)"


@dataclass(frozen=True, slots=True)
class SelfStatement:
    category: str
    fact: str


_PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    (
        "name",
        re.compile(
            rf"\b(?:my name is|my name's|call me|i'm called|i am called)\s+"
            rf"(?P<value>[A-Z][\w'-]{{1,30}}(?:\s[A-Z][\w'-]{{1,30}})?)"
            rf"{_STOP}",
            re.IGNORECASE,
        ),
        "is called {value}",
    ),
    (
        "age",
        re.compile(
            r"\b(?:i am|i'm|im)\s+(?P<value>\d{1,3})\s*(?:years?|yrs?|y/?o)\b"
            r"(?:\s*old)?",
            re.IGNORECASE,
        ),
        "is {value} years old",
    ),
    (
        "age",
        re.compile(r"\bi\s+(?:just\s+)?turned\s+(?P<value>\d{1,3})\b", re.IGNORECASE),
        "is {value} years old",
    ),
    (
        "location",
        re.compile(
            rf"\bi\s+(?:just\s+|recently\s+)?(?:live|moved|relocated)\s+"
            rf"(?:in|to)\s+{_VALUE}{_STOP}",
            re.IGNORECASE,
        ),
        "lives in {value}",
    ),
    (
        "location",
        re.compile(rf"\b(?:i'm|i am|im)\s+from\s+{_VALUE}{_STOP}", re.IGNORECASE),
        "is from {value}",
    ),
    (
        "job",
        re.compile(rf"\bi\s+work\s+as\s+(?:an?\s+)?{_VALUE}{_STOP}", re.IGNORECASE),
        "works as {value}",
    ),
    (
        "job",
        re.compile(rf"\bi\s+work\s+(?:at|for)\s+{_VALUE}{_STOP}", re.IGNORECASE),
        "works at {value}",
    ),
    (
        "job",
        re.compile(rf"\bmy\s+job\s+is\s+(?:an?\s+)?{_VALUE}{_STOP}", re.IGNORECASE),
        "works as {value}",
    ),
    (
        "job",
        re.compile(
            r"\b(?:i'm|i am|im)\s+an?\s+(?P<value>(?:[\w-]+\s)?(?:developer|engineer|"
            r"teacher|nurse|doctor|student|designer|artist|chef|cook|writer|"
            r"lawyer|programmer|accountant|manager|mechanic|musician|farmer|"
            r"scientist|researcher|driver|pilot|barista|streamer|fisherman))\b",
            re.IGNORECASE,
        ),
        "works as {value}",
    ),
    (
        "dislikes",
        re.compile(
            rf"\bi\s+(?:really\s+)?(?:hate|dislike|can't stand|cannot stand|"
            rf"don't like|do not like)\s+{_VALUE}{_STOP}",
            re.IGNORECASE,
        ),
        "dislikes {value}",
    ),
    (
        "likes",
        re.compile(
            rf"\bi\s+(?:really\s+|absolutely\s+)?(?:love|like|enjoy|adore)\s+"
            rf"{_VALUE}{_STOP}",
            re.IGNORECASE,
        ),
        "likes {value}",
    ),
    (
        "likes",
        re.compile(
            rf"\bmy\s+fav(?:ou?rite)?\s+(?P<what>\w+)\s+is\s+{_VALUE}{_STOP}", re.IGNORECASE
        ),
        "'s favourite {what} is {value}",
    ),
    (
        "pets",
        re.compile(
            r"\bi\s+have\s+an?\s+(?P<what>dog|cat|parrot|rabbit|hamster|fish|"
            r"snake|turtle|horse|bird|lizard|ferret|guinea pig)"
            r"(?:\s+(?:named|called)\s+(?P<value>[A-Z][\w'-]{1,30}))?",
            re.IGNORECASE,
        ),
        "has a {what}{named}",
    ),
    (
        "pets",
        re.compile(
            r"\bmy\s+(?P<what>dog|cat|parrot|rabbit|hamster|fish|snake|turtle|"
            r"horse|bird|lizard|ferret)(?:'s name is|\s+is\s+(?:named|called))\s+"
            r"(?P<value>[A-Z][\w'-]{1,30})",
            re.IGNORECASE,
        ),
        "has a {what}{named}",
    ),
    (
        "plans",
        re.compile(rf"\bi(?:'m| am|m)\s+(?:going|planning)\s+to\s+{_VALUE}{_STOP}", re.IGNORECASE),
        "plans to {value}",
    ),
    (
        "plans",
        re.compile(rf"\bi\s+(?:will|plan to|intend to)\s+{_VALUE}{_STOP}", re.IGNORECASE),
        "plans to {value}",
    ),
    (
        "relationships",
        re.compile(
            r"\bmy\s+(?P<what>wife|husband|girlfriend|boyfriend|partner|"
            r"son|daughter|brother|sister|mom|mum|mother|dad|father|"
            r"best friend)(?:'s name is|\s+is\s+(?:named|called))\s+"
            r"(?P<value>[A-Z][\w'-]{1,30})",
            re.IGNORECASE,
        ),
        "'s {what} is called {value}",
    ),
    (
        "relationships",
        re.compile(
            r"\bi\s+have\s+(?:a|an|two|three|\d)\s+(?P<value>(?:wife|"
            r"husband|girlfriend|boyfriend|partner|kids?|children|sons?|"
            r"daughters?|brothers?|sisters?))\b",
            re.IGNORECASE,
        ),
        "has {value}",
    ),
]
_NOT_A_STATEMENT = re.compile(
    # hypotheticals, negations, questions, and words put in someone's mouth ("say I ...")
    r"\b(if|would|wish|maybe|might|pretend|imagine|suppose|never|not|say|says|said|tell|"
    r"repeat|write|type)\b|\?\s*$",
    re.IGNORECASE,
)
_SENTENCES = re.compile(r"(?<=[.!?\n])\s+")


def _clean_value(value: str) -> str | None:
    value = re.sub(r"\s+", " ", value).strip(" '\"*_~`-")
    value = re.sub(r"^(the|a|an)\s+(?=\w+\s+\w)", "", value, flags=re.IGNORECASE)
    words = value.split()
    if not words or len(words) > MAX_VALUE_WORDS:
        return None
    if re.fullmatch(
        r"(it|that|this|them|you|u|him|her|so|too|much|lot|a lot)", value, re.IGNORECASE
    ):
        return None
    return value


def extract_self_statements(text: str) -> Iterator[SelfStatement]:
    """Facts a person stated about themselves in ``text`` (third person, no subject)."""
    seen: set[str] = set()
    for sentence in _SENTENCES.split(text[:4000]):
        if _NOT_A_STATEMENT.search(sentence):
            continue
        for category, pattern, template in _PATTERNS:
            for match in pattern.finditer(sentence):
                groups = match.groupdict()
                value = _clean_value(groups.get("value") or "") if groups.get("value") else ""
                if value is None:
                    continue
                named = f" called {value}" if category == "pets" and value else ""
                if category != "pets" and not value:
                    continue
                fact = template.format(
                    value=value, what=(groups.get("what") or "").lower(), named=named
                ).strip()
                key = fact.lower()
                if key not in seen:
                    seen.add(key)
                    yield SelfStatement(category, fact)
