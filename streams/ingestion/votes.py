"""Per-event votes: how much one feedback event votes for its product's intent label, as it arrives.

Pure functions of one event. The vote goes to the label of the product's category (the store
joins the product to the catalog and the event to its query); a weight of 0 means "abstain".
This running vote is what ingestion can afford per event; the labeling functions of
``streams.weak.functions`` see a whole search (skips, dwell, reformulations) and make the labels
training reads.
"""

from collections.abc import Callable

from streams.events import Feedback, FeedbackType

EventVoteFunction = Callable[[Feedback], float]


def lf_purchase(event: Feedback) -> float:
    """A purchase is the strongest evidence of what the shopper meant."""
    return 3.0 if event.type is FeedbackType.purchase else 0.0


def lf_add_to_cart(event: Feedback) -> float:
    return 2.0 if event.type is FeedbackType.add_to_cart else 0.0


def lf_click(event: Feedback) -> float:
    """A click is weak, position-biased evidence (issue #3 corrects it for position)."""
    return 1.0 if event.type is FeedbackType.click else 0.0


EVENT_VOTE_FUNCTIONS: tuple[EventVoteFunction, ...] = (lf_purchase, lf_add_to_cart, lf_click)


def vote_weight(event: Feedback, functions: tuple[EventVoteFunction, ...] = EVENT_VOTE_FUNCTIONS) -> float:
    """The summed vote of every labeling function for this event (a plain loop: it runs per event)."""
    total = 0.0
    for fn in functions:
        total += fn(event)
    return total
