"""Label dimensions: the several things one query is labelled with.

A query has a *category* (which part of the catalogue the shopper means: the taxonomy's labels,
voted by the products they chose) and an *intent type* (what the shopper wants to do: buy, browse,
ask a question or get help, voted by what they did and where they went). Every label table keys
its rows by dimension, so each dimension has its own weak labels, gold labels, report and drift;
rows written before dimensions existed are ``category`` rows (the migration's server default),
which is why single-dimension deployments keep working unchanged.

The names live in the store, the lowest layer, because the aggregation (``streams``), the
trainer and the inference workers all key by them.
"""

CATEGORY = "category"
INTENT_TYPE = "intent_type"
DIMENSIONS = (CATEGORY, INTENT_TYPE)

# The intent-type label set: fixed, because its labeling functions (streams.weak.intent_types)
# vote for exactly these. Buy: wants a product; browse: compares before buying; ask: wants an
# answer (a guide, a size chart); help: has a problem with an order, a payment or a product.
BUY, BROWSE, ASK, HELP = "buy", "browse", "ask", "help"
INTENT_TYPES = (BUY, BROWSE, ASK, HELP)


def check_dimensions(dimensions: list[str]) -> list[str]:
    """``dimensions`` if each is known, ``category`` included and none repeated; else ValueError.

    ``category`` is the primary dimension (training rows, the gate's slices and the behaviour
    memory are keyed by it), so it cannot be left out.
    """
    unknown = [d for d in dimensions if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown label dimension(s) {unknown}: known are {list(DIMENSIONS)}")
    if CATEGORY not in dimensions:
        raise ValueError(f"the {CATEGORY!r} dimension cannot be left out (got {dimensions})")
    if len(set(dimensions)) != len(dimensions):
        raise ValueError(f"a label dimension is repeated in {dimensions}")
    return dimensions
