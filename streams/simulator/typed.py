"""What realistic shoppers typed, per normalised text: the truth, ambiguity and tags of each.

With ``realism`` on, a text is no longer one catalogue entry: "sony" comes from every leaf of the
brand, and a typo may land on a text another search typed on purpose. Each search therefore votes
for its text's truth with the leaf its shopper meant (a catalogue text: its majority intent, as in
the easy shop); the truth is the text's most voted leaf (ties: the first voted), and a text with
votes for several leaves, or a slip on an ambiguous catalogue text, is ambiguous.

With intent types on (:mod:`.cues`), each search also votes for its text's intent type with the
type its shopper had, and the text's intent type is the most voted one (ties: the first voted).
"""

from collections.abc import Sequence

from store.taxonomy import normalise_query
from streams.simulator.cues import Purposes
from streams.simulator.phrasing import HARD_FOR_ENGINE, Phraser
from streams.simulator.vocabulary import Leaf
from streams.simulator.world import QueryText
from streams.weak.intent_types import BUY

_NO_TAGS: frozenset[str] = frozenset()


class TypedTexts:
    """The texts one simulation's shoppers typed (:meth:`type` per search), with their votes."""

    def __init__(self, phraser: Phraser, purposes: Purposes | None = None) -> None:
        self.phraser = phraser
        self.purposes = purposes
        self.votes: dict[str, dict[int, int]] = {}  # normalised text -> leaf -> searches meaning it
        self.type_votes: dict[str, dict[str, int]] = {}  # normalised text -> intent type -> searches
        self.tags: dict[str, set[str]] = {}
        self.inherited_ambiguity: set[str] = set()

    def type(self, entry: QueryText, intent: int, itype: str | None = None) -> tuple[str, bool, int | None]:
        """The text typed for ``entry`` by a shopper meaning ``intent`` (of intent type ``itype``;
        None: intent types off), whether a lexical engine matches it badly (a typo, paraphrase,
        question, brand or other language), and the help topic the text names (None: none)."""
        phrased = self.phraser.phrase(entry, intent)
        if phrased is None:  # catalogue texts are already normalised
            typed, meant, ambiguous, tags = entry.text, entry.truth, entry.ambiguous, _NO_TAGS
        else:
            typed, meant, ambiguous, tags = phrased.text, phrased.meant, phrased.ambiguous, phrased.tags
        topic, cued = None, False
        if itype is not None and itype != BUY:
            assert self.purposes is not None
            said, topic = self.purposes.cue(itype, typed, tags, self.phraser.words[meant])
            typed, cued = said, said is not typed
        key = typed if phrased is None and not cued else normalise_query(typed)
        if tags:
            self.tags.setdefault(key, set()).update(tags)
        votes = self.votes.get(key)
        if votes is None:
            votes = self.votes[key] = {}
        votes[meant] = votes.get(meant, 0) + 1
        if ambiguous:
            self.inherited_ambiguity.add(key)
        if itype is not None:
            types = self.type_votes.get(key)
            if types is None:
                types = self.type_votes[key] = {}
            types[itype] = types.get(itype, 0) + 1
        return typed, not HARD_FOR_ENGINE.isdisjoint(tags), topic

    def truth(self, leaves: Sequence[Leaf]) -> dict[str, str]:
        """Normalised text -> full path of its most voted leaf."""
        return {text: leaves[max(votes, key=votes.__getitem__)].path for text, votes in self.votes.items()}

    def intent_types(self) -> dict[str, str]:
        """Normalised text -> its most voted intent type (empty with intent types off)."""
        return {text: max(votes, key=votes.__getitem__) for text, votes in self.type_votes.items()}

    def ambiguous(self) -> frozenset[str]:
        mixed = {text for text, votes in self.votes.items() if len(votes) > 1}
        return frozenset(mixed | self.inherited_ambiguity)

    def kinds(self) -> dict[str, frozenset[str]]:
        return {text: frozenset(tags) for text, tags in self.tags.items()}
