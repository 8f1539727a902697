"""The simulated shop: a catalog, and the query texts shoppers type with their true intents."""

import itertools
import random
from dataclasses import dataclass

from streams.events import Product
from streams.simulator.vocabulary import (
    AMBIGUOUS,
    COLORS,
    GENERIC_PREFIXES,
    LEAVES,
    NEUTRAL_PREFIXES,
    NEUTRAL_SUFFIXES,
    Leaf,
    title_case,
)


@dataclass(frozen=True)
class QueryText:
    """A distinct query text and what shoppers typing it may mean."""

    text: str  # canonical: lower case, single spaces (already normalised)
    leaves: tuple[int, ...]  # candidate intent leaves; one unless ambiguous
    cum_weights: tuple[float, ...]  # cumulative intent mixture over ``leaves``
    truth: int  # the majority intent leaf

    @property
    def ambiguous(self) -> bool:
        return len(self.leaves) > 1


@dataclass(frozen=True)
class World:
    leaves: tuple[Leaf, ...]
    products: list[Product]
    product_ids: list[str]
    product_leaf: list[int]  # product index -> leaf index
    leaf_products: list[list[int]]  # leaf index -> product indices
    siblings: list[list[int]]  # leaf index -> other leaves of the same top-level category
    texts: list[QueryText]  # most popular first


def build_world(
    rng: random.Random, n_products: int, ambiguity_share: float, *, tail_texts: bool = False
) -> World:
    """The catalog and the query texts; ``tail_texts`` adds the long combinations (see
    :func:`_tail_texts`), ~130,000 texts instead of ~17,000."""
    leaves = LEAVES
    products, product_leaf, leaf_products = _catalog(rng, leaves, n_products)
    siblings = [
        [j for j, other in enumerate(leaves) if other.top == leaf.top and j != i]
        for i, leaf in enumerate(leaves)
    ]
    texts = _texts(rng, leaves, ambiguity_share, tail_texts)
    return World(
        leaves, products, [p.product_id for p in products], product_leaf, leaf_products, siblings, texts
    )


def _catalog(
    rng: random.Random, leaves: tuple[Leaf, ...], n: int
) -> tuple[list[Product], list[int], list[list[int]]]:
    products: list[Product] = []
    product_leaf: list[int] = []
    leaf_products: list[list[int]] = [[] for _ in leaves]
    for i in range(n):
        li = i if i < len(leaves) else rng.randrange(len(leaves))  # every leaf has at least one product
        leaf = leaves[li]
        words = [
            rng.choice(leaf.brands),
            title_case(rng.choice(leaf.adjectives)),
            title_case(rng.choice(leaf.nouns)),
        ]
        title = " ".join(words)
        u = rng.random()
        if u < 0.35:
            mod = rng.choice(leaf.modifiers)
            title += (
                f" {title_case(mod)}" if mod.split()[0] in ("for", "with", "in") else f", {title_case(mod)}"
            )
        elif u < 0.6:
            title += f", {rng.choice(COLORS)}"
        products.append(Product(product_id=f"p{i:06d}", category_path=leaf.path, title=title))
        product_leaf.append(li)
        leaf_products[li].append(i)
    return products, product_leaf, leaf_products


def _leaf_texts(leaf: Leaf) -> list[tuple[str, int]]:
    """A leaf's combinatorial query texts and their specificity (1: "earbuds", 3: "sony ... for kids")."""
    nouns, adjs, mods = leaf.nouns, leaf.adjectives, leaf.modifiers
    brands = [b.lower() for b in leaf.brands]
    head = nouns[0]
    out = [(n, 1) for n in nouns]
    out += [(f"{a} {n}", 2) for a, n in itertools.product(adjs, nouns)]
    out += [(f"{b} {n}", 2) for b, n in itertools.product(brands, nouns)]
    out += [(f"{n} {m}", 2) for n, m in itertools.product(nouns, mods)]
    out += [(f"{g} {n}", 2) for g, n in itertools.product(GENERIC_PREFIXES, nouns)]
    out += [(f"{a} {head} {m}", 3) for a, m in itertools.product(adjs, mods)]
    out += [(f"{b} {a} {head}", 3) for b, a in itertools.product(brands, adjs)]
    out += [(f"{b} {n} {m}", 3) for b, n, m in itertools.product(brands, nouns, mods)]
    return [(" ".join(t.split()), level) for t, level in out]


def _tail_texts(leaf: Leaf) -> list[tuple[str, int]]:
    """The longer, rarer texts of a leaf (~1,200 each): what makes most of a real log's distinct
    queries searched once. Every word is one the leaf's products carry (colours included), so a
    model can still learn them; they are ranked after the short texts (specificity 3 and 4).
    """
    nouns, adjs, mods = leaf.nouns, leaf.adjectives, leaf.modifiers
    brands = [b.lower() for b in leaf.brands]
    colors = [c.lower() for c in COLORS]
    rest = nouns[1:]  # _leaf_texts pairs only the head noun with these
    out = [(f"{b} {a} {n} {m}", 4) for b, a, n, m in itertools.product(brands, adjs, nouns, mods)]
    out += [(f"{g} {a} {n} {m}", 4) for g, a, n, m in itertools.product(GENERIC_PREFIXES, adjs, nouns, mods)]
    out += [(f"{a} {n} {m}", 3) for a, n, m in itertools.product(adjs, rest, mods)]
    out += [(f"{b} {a} {n}", 3) for b, a, n in itertools.product(brands, adjs, rest)]
    out += [(f"{a} {b} {n}", 3) for a, b, n in itertools.product(adjs, brands, nouns)]
    out += [(f"{g} {a} {n}", 3) for g, a, n in itertools.product(GENERIC_PREFIXES, adjs, nouns)]
    out += [(f"{g} {b} {n}", 3) for g, b, n in itertools.product(GENERIC_PREFIXES, brands, nouns)]
    out += [(f"{g} {n} {m}", 3) for g, n, m in itertools.product(GENERIC_PREFIXES, nouns, mods)]
    out += [(f"{c} {n}", 3) for c, n in itertools.product(colors, nouns)]
    out += [(f"{c} {a} {n}", 3) for c, a, n in itertools.product(colors, adjs, nouns)]
    out += [(f"{c} {b} {n}", 3) for c, b, n in itertools.product(colors, brands, nouns)]
    return [(" ".join(t.split()), level) for t, level in out]


def _texts(
    rng: random.Random, leaves: tuple[Leaf, ...], ambiguity_share: float, tail_texts: bool = False
) -> list[QueryText]:
    index = {leaf.path: i for i, leaf in enumerate(leaves)}
    plain: dict[str, tuple[int, int]] = {}  # text -> (leaf, specificity)
    for li, leaf in enumerate(leaves):
        for text, level in _leaf_texts(leaf):
            plain.setdefault(text, (li, level))  # a text two leaves share keeps its first leaf
    if tail_texts:  # after every short text, so none of those changes leaf
        for li, leaf in enumerate(leaves):
            for text, level in _tail_texts(leaf):
                plain.setdefault(text, (li, level))

    # Ambiguous texts: every bare term, then a sample of neutral combinations up to the share.
    bare = list(AMBIGUOUS)
    combos = [f"{p} {t}" for t in AMBIGUOUS for p in NEUTRAL_PREFIXES]
    combos += [f"{t} {s}" for t in AMBIGUOUS for s in NEUTRAL_SUFFIXES]
    combos += [f"{p} {t} {s}" for t in AMBIGUOUS for p in NEUTRAL_PREFIXES for s in NEUTRAL_SUFFIXES]
    wanted = round(ambiguity_share / (1 - ambiguity_share) * len(plain)) if ambiguity_share > 0 else 0
    chosen = bare[:wanted] + rng.sample(combos, min(len(combos), max(0, wanted - len(bare))))
    mixtures = {term: _mixture(rng, len(paths)) for term, paths in AMBIGUOUS.items()}

    entries: list[QueryText] = []
    levels: list[int] = []
    for text in chosen:
        term = next(w for w in text.split() if w in AMBIGUOUS)
        cand = tuple(index[p] for p in AMBIGUOUS[term])
        weights = mixtures[term]
        cum = tuple(itertools.accumulate(weights))
        entries.append(QueryText(text, cand, cum, cand[weights.index(max(weights))]))
        levels.append(len(text.split()) - len(term.split()) + 1 if text != term else 1)
        plain.pop(text, None)
    for text, (li, level) in plain.items():
        entries.append(QueryText(text, (li,), (1.0,), li))
        levels.append(level)

    # Popularity: generic texts tend to be head queries; specific ones form the long tail.
    keyed = [(level + 2.5 * rng.random(), i) for i, level in enumerate(levels)]
    keyed.sort()
    return [entries[i] for _, i in keyed]


def _mixture(rng: random.Random, k: int) -> list[float]:
    """Intent weights of an ambiguous term: one clear majority, the rest sharing the remainder."""
    major = rng.uniform(0.55, 0.8) if k == 2 else rng.uniform(0.45, 0.7)
    rest = [rng.uniform(0.5, 1.0) for _ in range(k - 1)]
    scale = (1 - major) / sum(rest)
    weights = [r * scale for r in rest]
    weights.insert(rng.randrange(k), major)
    return weights
