"""Markov text: tokenising, learning and generating, over the database or over a few texts.

The chain is a classic word n-gram chain (``state_size`` words predict the next one).  A
message ``a b c`` with state size 2 is learned as::

    (BEGIN BEGIN) -> a,  (BEGIN a) -> b,  (a b) -> c,  (b c) -> END

Generation is seeded by the message being answered: it prefers to open with one of its words
(a message that started with it), else to continue from a state that starts with it, else to
start anywhere.  It never returns one of the learned messages verbatim (compared by a digest
of the lowercased, whitespace-collapsed text) nor a single word; after ``tries`` failed walks
it returns ``None`` and the caller says something else.

Learning decisions:

* Only human messages are learned; the engine and the trainer filter bots out before calling.
* Messages of fewer than two words are skipped: they can only ever generate a single word,
  which generation rejects, so they would be dead ends that waste tries.
* Mentions (``<@123>``, ``<@&123>``, ``@everyone``, ``@here``) are dropped, so the bot never
  pings someone because a chain walked through a mention; words longer than
  :data:`MAX_WORD_CHARS` characters (pasted blobs) are dropped; a message is learned up to its
  first :data:`MAX_LEARN_WORDS` words.

No SQL lives here: :class:`MarkovGenerator` talks to :class:`~carrier.store.markov.
MarkovRepository`, :class:`TextChain` keeps its tiny chain in memory.
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from carrier.settings import MarkovSettings
from carrier.store.markov import LearnBatch, MarkovReader, MarkovRepository, Transition

BEGIN = "\x02"
"""Fills the state before a message's first word."""
END = "\x03"
"""The ``next_word`` after a message's last word."""

# The state column holds at most 600 characters and a state is up to 3 words plus 2 spaces;
# 199 keeps every state inside it on PostgreSQL, which enforces VARCHAR lengths.
MAX_WORD_CHARS = 199
MAX_LEARN_WORDS = 100
MIN_LEARN_WORDS = 2

_MENTION = re.compile(r"^<@[!&]?\d+>$|^@(everyone|here)$")
# Control characters never belong in chat text; BEGIN/END/NUL among them would break the
# encoding (and PostgreSQL rejects NUL in text).
_CONTROL = dict.fromkeys(c for c in range(32) if chr(c) not in " \t\n\r\x0b\x0c")
_PUNCTUATION = string.punctuation + "“”‘’«»…¡¿"

STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours out
    over own same she should so some such than that the their theirs them then there these they
    this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself im i'm it's dont don't thats that's yes yeah
    ok okay lol lmao oh u ur
    """.split()  # noqa: SIM905 (a word list reads better as text)
)


def tokenize(text: str, max_words: int = MAX_LEARN_WORDS) -> list[str]:
    """The words of ``text`` as the chain learns them (see the module docstring for the rules)."""
    words: list[str] = []
    for word in text.translate(_CONTROL).split():
        if len(word) > MAX_WORD_CHARS or _MENTION.match(word):
            continue
        words.append(word)
        if len(words) >= max_words:
            break
    return words


def transitions(words: Sequence[str], state_size: int) -> list[Transition]:
    """Every ``(head, state, next_word)`` of one message, BEGIN-padded and END-terminated."""
    padded = [BEGIN] * state_size + list(words) + [END]
    out: list[Transition] = []
    for i in range(len(words) + 1):
        state = padded[i : i + state_size]
        out.append((state[0], " ".join(state), padded[i + state_size]))
    return out


def normalise(text: str) -> str:
    """Lowercased, whitespace collapsed: two texts that read the same compare equal."""
    return " ".join(text.lower().split())


def digest(text: str) -> int:
    """A signed 64-bit digest of :func:`normalise` ``(text)`` (fits a SQL BIGINT)."""
    raw = hashlib.blake2b(normalise(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(raw, "big", signed=True)


def source_digests(text: str, words: Sequence[str]) -> list[int]:
    """Digests that mark ``text`` as learned: the text itself and, if tokenising changed it,
    the words the chain actually learned (which is what a walk could reproduce)."""
    learned = digest(" ".join(words))
    whole = digest(text)
    return [learned] if learned == whole else [learned, whole]


def seed_words(text: str, rng: random.Random, limit: int = 3) -> list[str]:
    """Words of ``text`` to start from, best first: no stopwords, longer words preferred.

    Each chosen word comes as written, without surrounding punctuation and lowercased (only
    the distinct forms), since the chain keeps words as they were typed.
    """
    ranked: list[tuple[float, str, str]] = []
    seen: set[str] = set()
    for token in tokenize(text, max_words=200):
        if token.startswith(("http://", "https://", "<")):
            continue
        core = token.strip(_PUNCTUATION)
        key = core.lower()
        if len(core) < 2 or key in STOPWORDS or key in seen:
            continue
        seen.add(key)
        # Length stands in for rarity; the jitter varies the pick between similar words.
        ranked.append((len(core) + rng.random() * 1.5, token, core))
    ranked.sort(key=lambda item: item[0], reverse=True)
    out: list[str] = []
    for _, token, core in ranked[:limit]:
        for form in (token, core, core.lower()):
            if form not in out:
                out.append(form)
    return out


class _ChainView(Protocol):
    """What a walk needs from a chain, whether it lives in the database or in memory."""

    async def has_state(self, state: str) -> bool:
        """Whether anything ever followed ``state``."""
        ...

    async def states_with_head(self, head: str, rng: random.Random) -> list[str]:
        """Some states whose first word is ``head`` (all of them if there are few)."""
        ...

    async def step(self, state: str, rng: random.Random) -> tuple[str | None, bool]:
        """A next word drawn by weight (``None``: dead end), and whether there was a choice."""
        ...

    async def is_source(self, text: str) -> bool:
        """Whether ``text`` is one of the learned messages (as :func:`normalise` sees it)."""
        ...


async def _generate(
    chain: _ChainView,
    state_size: int,
    seed_text: str,
    rng: random.Random,
    max_words: int,
    tries: int,
) -> str | None:
    """Walk the chain up to ``tries`` times; the first acceptable text wins."""
    begin = (BEGIN,) * state_size
    seeds = seed_words(seed_text, rng)
    starts: list[tuple[str, ...]] = []
    for seed in seeds:  # messages that opened with a seed word
        # (With state size 1 this state is just the word, wherever it stood: close enough.)
        opening = (*begin[1:], seed)
        if await chain.has_state(" ".join(opening)):
            starts.append(opening)
    if not starts:  # any state that starts with a seed word
        for seed in seeds:
            starts.extend(tuple(s.split(" ")) for s in await chain.states_with_head(seed, rng))
            if starts:
                break
    # Most tries go to the seeded starts; the last quarter may start anywhere.
    seeded_tries = tries - tries // 4 if starts else 0
    rejected: set[str] = set()
    exhausted: set[tuple[str, ...]] = set()  # starts whose only possible walk was rejected
    for attempt in range(tries):
        pool = [s for s in starts if s not in exhausted] if attempt < seeded_tries else []
        start = rng.choice(pool) if pool else begin
        if start == begin and begin in exhausted:
            break
        words, forced = await _walk(chain, start, rng, max_words)
        text = " ".join(words)
        if len(words) >= 2 and text not in rejected and not await chain.is_source(text):
            return text
        rejected.add(text)
        if forced:
            exhausted.add(start)
    return None


async def _walk(
    chain: _ChainView, start: tuple[str, ...], rng: random.Random, max_words: int
) -> tuple[list[str], bool]:
    """One weighted random walk; also says whether no step had a choice (a forced walk)."""
    words = [w for w in start if w != BEGIN]
    state = start
    forced = True
    while len(words) < max_words:
        choice, had_choice = await chain.step(" ".join(state), rng)
        forced = forced and not had_choice
        if choice is None or choice == END:
            break
        words.append(choice)
        state = (*state[1:], choice)
    return words, forced


def _weighted(options: Sequence[tuple[str, int]], rng: random.Random) -> str:
    if len(options) == 1:
        return options[0][0]
    return rng.choices([w for w, _ in options], [c for _, c in options])[0]


# Most states are followed by a handful of words and are read whole.  A state followed by
# thousands ("i think", ...) would cost milliseconds to ship to Python, so every state is read
# as its _TOP most frequent words plus the total count: a draw lands in that head with its
# exact probability, otherwise in a window of the long tail (whose words are all about as
# rare), drawn by count.
_TOP = 64
_TAIL_WINDOW = 32
_PIVOTS = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class _Options:
    words: list[tuple[str, int]]  # all of them, or the _TOP most frequent ones
    total: int | None = None  # set when ``words`` is only the head of a long list

    @property
    def head_weight(self) -> int:
        return sum(count for _, count in self.words)


class _DatabaseView:
    """A chain in the database, read through one connection; lookups cached for one call."""

    def __init__(self, reader: MarkovReader, state_size: int) -> None:
        self._reader = reader
        self._begin = " ".join([BEGIN] * state_size)
        self._cache: dict[str, _Options] = {}

    async def _options(self, state: str) -> _Options:
        found = self._cache.get(state)
        if found is None:
            total, distinct, top = await self._reader.top_next_words(state, _TOP)
            found = _Options(top, total if distinct > len(top) else None)
            self._cache[state] = found
        return found

    async def has_state(self, state: str) -> bool:
        return bool((await self._options(state)).words)

    async def step(self, state: str, rng: random.Random) -> tuple[str | None, bool]:
        if state == self._begin:
            return await self._opening_word(rng)
        options = await self._options(state)
        if not options.words:
            return None, False
        if options.total is None:
            return _weighted(options.words, rng), len(options.words) > 1
        if rng.random() * options.total < options.head_weight:
            return _weighted(options.words, rng), True
        return await self._tail_word(state, options, rng), True

    async def _opening_word(self, rng: random.Random) -> tuple[str | None, bool]:
        # A chain opens with one of tens of thousands of words: even counting them costs
        # milliseconds, so an unseeded start draws from a window of them around a random point.
        pivot = rng.choice(_PIVOTS)
        words = await self._reader.next_words(self._begin, after=pivot, limit=_TAIL_WINDOW)
        if len(words) < _TAIL_WINDOW:
            words += await self._reader.next_words(
                self._begin, before=pivot, limit=_TAIL_WINDOW - len(words)
            )
        if not words:
            return None, False
        return _weighted(words, rng), len(words) > 1

    async def _tail_word(self, state: str, options: _Options, rng: random.Random) -> str:
        # A window of the sorted list after a random frequent word: a cheap range scan of the
        # primary key that lands anywhere in the alphabet.
        head = {word for word, _ in options.words}
        pivot = rng.choice(options.words)[0]
        window = await self._reader.next_words(state, after=pivot, limit=_TAIL_WINDOW)
        tail = [(w, c) for w, c in window if w not in head]
        if not tail:
            window = await self._reader.next_words(state, before=pivot, limit=_TAIL_WINDOW)
            tail = [(w, c) for w, c in window if w not in head]
        return _weighted(tail or options.words, rng)

    async def states_with_head(self, head: str, rng: random.Random) -> list[str]:
        pivot = f"{head} {rng.choice(_PIVOTS)}"
        states = await self._reader.states_with_head(head, _TAIL_WINDOW, after=pivot)
        if len(states) < _TAIL_WINDOW:
            states += await self._reader.states_with_head(
                head, _TAIL_WINDOW - len(states), before=pivot
            )
        return states

    async def is_source(self, text: str) -> bool:
        return await self._reader.has_digest(digest(text))


@dataclass(frozen=True, slots=True)
class LearnResult:
    """What a bulk learning run did: messages learned, and skipped as under two words."""

    learned: int
    skipped: int


class MarkovGenerator:
    """The per-guild chains: learn from human messages, generate seeded replies."""

    def __init__(self, repository: MarkovRepository, settings: MarkovSettings) -> None:
        self._repository = repository
        self._settings = settings

    async def learn_in(
        self, conn: AsyncConnection, agent_id: str, guild_id: str, text: str
    ) -> bool:
        """Learn one human message inside the caller's transaction.

        Returns whether it was learned (messages under two words are skipped).  Call it only
        for human messages: bots' messages must never reach the chain.
        """
        words = tokenize(text)
        if len(words) < MIN_LEARN_WORDS:
            return False
        chain = await self._repository.chain(
            agent_id, guild_id, self._settings.state_size, conn=conn
        )
        await self._repository.learn_in(
            conn, chain.id, transitions(words, chain.state_size), source_digests(text, words)
        )
        return True

    async def learn_texts_in(
        self, conn: AsyncConnection, agent_id: str, guild_id: str, texts: Sequence[str]
    ) -> int:
        """:meth:`learn_in` for several messages of one guild, aggregated into one write.

        Returns how many were learned (the rest were under two words)."""
        pending: list[Transition] = []
        digests: list[int] = []
        learned = 0
        chain = None
        for text in texts:
            words = tokenize(text)
            if len(words) < MIN_LEARN_WORDS:
                continue
            if chain is None:
                chain = await self._repository.chain(
                    agent_id, guild_id, self._settings.state_size, conn=conn
                )
            pending.extend(transitions(words, chain.state_size))
            digests.extend(source_digests(text, words))
            learned += 1
        if chain is not None:
            await self._repository.learn_in(conn, chain.id, pending, digests, learned)
        return learned

    async def learn_many(
        self,
        agent_id: str,
        guild_id: str,
        texts: Iterable[str],
        *,
        batch_size: int = 10_000,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> LearnResult:
        """Learn many human messages (an import) in large transactions.

        ``on_progress(learned, skipped)`` is called with the increments after each batch is
        committed.  An interrupted run keeps the batches already committed.
        """
        chain = await self._repository.chain(agent_id, guild_id, self._settings.state_size)
        totals = [0, 0]
        # Batches are committed in the order they are made; each one's skip count waits here.
        skipped_per_batch: deque[int] = deque()

        def batches() -> Iterator[LearnBatch]:
            pending: list[Transition] = []
            digests: list[int] = []
            learned = skipped = 0
            for text in texts:
                words = tokenize(text)
                if len(words) < MIN_LEARN_WORDS:
                    skipped += 1
                    continue
                pending.extend(transitions(words, chain.state_size))
                digests.extend(source_digests(text, words))
                learned += 1
                if learned >= batch_size:
                    skipped_per_batch.append(skipped)
                    yield LearnBatch(pending, digests, learned)
                    pending, digests, learned, skipped = [], [], 0, 0
            skipped_per_batch.append(skipped)
            yield LearnBatch(pending, digests, learned)

        def written(batch: LearnBatch) -> None:
            skipped = skipped_per_batch.popleft()
            totals[0] += batch.messages
            totals[1] += skipped
            if on_progress is not None:
                on_progress(batch.messages, skipped)

        await self._repository.learn_bulk(chain.id, batches(), on_written=written)
        return LearnResult(totals[0], totals[1])

    async def generate(
        self,
        agent_id: str,
        guild_id: str,
        seed_text: str,
        rng: random.Random,
        max_words: int | None = None,
    ) -> str | None:
        """A new text from the guild's chain, seeded by the words of ``seed_text``.

        ``None`` when the chain is empty or every try produced a learned message verbatim or
        a single word.
        """
        chain = await self._repository.find_chain(agent_id, guild_id)
        if chain is None:
            return None
        async with self._repository.reader(chain.id) as reader:
            return await _generate(
                _DatabaseView(reader, chain.state_size),
                chain.state_size,
                seed_text,
                rng,
                max_words or self._settings.max_words,
                self._settings.tries,
            )

    async def generate_many(
        self,
        agent_id: str,
        guild_id: str,
        seed_text: str,
        rng: random.Random,
        count: int,
        *,
        attempts: int | None = None,
    ) -> list[str]:
        """Up to ``count`` distinct texts as :meth:`generate` makes them, from at most
        ``attempts`` (default ``2 * count``) walks, all through one connection whose
        lookups are shared: the walks start from the same seeded states."""
        chain = await self._repository.find_chain(agent_id, guild_id)
        if chain is None or count <= 0:
            return []
        texts: list[str] = []
        async with self._repository.reader(chain.id) as reader:
            view = _DatabaseView(reader, chain.state_size)
            for _ in range(attempts if attempts is not None else 2 * count):
                text = await _generate(
                    view,
                    chain.state_size,
                    seed_text,
                    rng,
                    self._settings.max_words,
                    self._settings.tries,
                )
                if text and text not in texts:
                    texts.append(text)
                if len(texts) >= count:
                    break
        return texts


class TextChain:
    """A small in-memory chain over a list of texts (the persona's own lines).

    Same walk and the same verbatim rule as the guild chains, against its own texts.  Cheap to
    build (well under a millisecond for ~50 texts), so callers build one per use and a persona
    edit shows at once.
    """

    def __init__(self, texts: Iterable[str], state_size: int = 2) -> None:
        self.state_size = state_size
        self._next: dict[str, Counter[str]] = {}
        self._heads: dict[str, list[str]] = {}
        self._sources: set[int] = set()
        begin = " ".join([BEGIN] * state_size)
        self._next[begin] = Counter()
        for text in texts:
            words = tokenize(text)
            if len(words) < MIN_LEARN_WORDS:
                continue
            self._sources.update(source_digests(text, words))
            for head, state, next_word in transitions(words, state_size):
                counter = self._next.get(state)
                if counter is None:
                    counter = self._next[state] = Counter()
                    self._heads.setdefault(head, []).append(state)
                counter[next_word] += 1
        self._begin = begin

    def __len__(self) -> int:
        """How many texts were learned (0: the chain cannot say anything)."""
        return sum(self._next[self._begin].values())

    async def has_state(self, state: str) -> bool:
        return bool(self._next.get(state))

    async def states_with_head(self, head: str, rng: random.Random) -> list[str]:
        return self._heads.get(head, [])

    async def step(self, state: str, rng: random.Random) -> tuple[str | None, bool]:
        counter = self._next.get(state)
        if not counter:
            return None, False
        return _weighted(sorted(counter.items()), rng), len(counter) > 1

    async def is_source(self, text: str) -> bool:
        return digest(text) in self._sources

    async def generate(
        self, seed_text: str, rng: random.Random, max_words: int = 30, tries: int = 20
    ) -> str | None:
        """A new text seeded by ``seed_text``, or ``None`` (see :class:`MarkovGenerator`)."""
        if not len(self):
            return None
        return await _generate(self, self.state_size, seed_text, rng, max_words, tries)
