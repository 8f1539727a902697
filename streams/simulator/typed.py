"""What realistic shoppers typed, per normalised text: the truth, ambiguity and tags of each.

With ``realism`` on, a text is no longer one catalogue entry: "sony" comes from every leaf of the
brand, and a typo may land on a text another search typed on purpose. Each search therefore votes
for its text's truth with the leaf its shopper meant (a catalogue text: its majority intent, as in
the easy shop); the truth is the text's most voted leaf (ties: the first voted), and a text with
votes for several leaves, or a slip on an ambiguous catalogue text, is ambiguous.
"""

from collections.abc import Sequence

from store.taxonomy import normalise_query
from streams.simulator.phrasing import HARD_FOR_ENGINE, Phraser
from streams.simulator.vocabulary import Leaf
from streams.simulator.world import QueryText


class TypedTexts:
    """The texts one simulation's shoppers typed (:meth:`type` per search), with their votes."""

    def __init__(self, phraser: Phraser) -> None:
        self.phraser = phraser
        self.votes: dict[str, dict[int, int]] = {}  # normalised text -> leaf -> searches meaning it
        self.tags: dict[str, set[str]] = {}
        self.inherited_ambiguity: set[str] = set()

    def type(self, entry: QueryText, intent: int) -> tuple[str, bool]:
        """The text typed for ``entry`` by a shopper meaning ``intent``, and whether a lexical
        engine matches it badly (a typo, paraphrase, question, brand or other language)."""
        phrased = self.phraser.phrase(entry, intent)
        if phrased is None:  # catalogue texts are already normalised
            key, typed, meant, ambiguous = entry.text, entry.text, entry.truth, entry.ambiguous
            hard = False
        else:
            typed, meant, ambiguous = phrased.text, phrased.meant, phrased.ambiguous
            key = normalise_query(typed)
            self.tags.setdefault(key, set()).update(phrased.tags)
            hard = not HARD_FOR_ENGINE.isdisjoint(phrased.tags)
        votes = self.votes.get(key)
        if votes is None:
            votes = self.votes[key] = {}
        votes[meant] = votes.get(meant, 0) + 1
        if ambiguous:
            self.inherited_ambiguity.add(key)
        return typed, hard

    def truth(self, leaves: Sequence[Leaf]) -> dict[str, str]:
        """Normalised text -> full path of its most voted leaf."""
        return {text: leaves[max(votes, key=votes.__getitem__)].path for text, votes in self.votes.items()}

    def ambiguous(self) -> frozenset[str]:
        mixed = {text for text, votes in self.votes.items() if len(votes) > 1}
        return frozenset(mixed | self.inherited_ambiguity)

    def kinds(self) -> dict[str, frozenset[str]]:
        return {text: frozenset(tags) for text, tags in self.tags.items()}
