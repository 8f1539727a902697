"""Category path -> intent label: one function so ingestion and evaluation cannot disagree."""

from store.settings import TaxonomySettings


def label_for_category(category_path: str, taxonomy: TaxonomySettings) -> str | None:
    """The intent label a product in ``category_path`` votes for, or ``None`` if outside the taxonomy."""
    parts = [p for p in category_path.strip("/").split("/") if p]
    if not parts:
        return None
    label = "/".join(parts[: taxonomy.depth])
    if taxonomy.labels and label not in taxonomy.labels:
        return None
    return label


def normalise_query(text: str) -> str:
    """The key weak labels are aggregated under: case- and whitespace-insensitive query text."""
    return " ".join(text.casefold().split())
