"""Per-event votes: how much one feedback event votes for its product's intent label, as it arrives.

Pure functions of one event. The vote goes to the label of the product's category (the store
joins the product to the catalog and the event to its query); a weight of 0 means "abstain".
This running vote is what ingestion can afford per event; the labeling functions of
``streams.weak.functions`` see a whole search (skips, dwell, reformulations) and make the labels
training reads.
"""

from collections.abc import Callable

from streams.codec import WireFeedback
from streams.events import Feedback, FeedbackType

FeedbackLike = Feedback | WireFeedback  # the model, or the ingestion hot path's msgspec mirror of it
EventVoteFunction = Callable[[FeedbackLike], float]
# Looking a member up on the Enum class costs ~0.3 us in Python 3.11 (a descriptor in Python), and
# these run for every event of the hot path: the members are looked up once.
_PURCHASE, _ADD_TO_CART, _CLICK = FeedbackType.purchase, FeedbackType.add_to_cart, FeedbackType.click


def lf_purchase(event: FeedbackLike) -> float:
    """A purchase is the strongest evidence of what the shopper meant."""
    return 3.0 if event.type is _PURCHASE else 0.0


def lf_add_to_cart(event: FeedbackLike) -> float:
    return 2.0 if event.type is _ADD_TO_CART else 0.0


def lf_click(event: FeedbackLike) -> float:
    """A click is weak, position-biased evidence (issue #3 corrects it for position)."""
    return 1.0 if event.type is _CLICK else 0.0


EVENT_VOTE_FUNCTIONS: tuple[EventVoteFunction, ...] = (lf_purchase, lf_add_to_cart, lf_click)


def vote_weight(
    event: FeedbackLike, functions: tuple[EventVoteFunction, ...] = EVENT_VOTE_FUNCTIONS
) -> float:
    """The summed vote of every labeling function for this event (a plain loop: it runs per event)."""
    total = 0.0
    for fn in functions:
        total += fn(event)
    return total
