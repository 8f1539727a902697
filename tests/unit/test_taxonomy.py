import pytest

from store.settings import TaxonomySettings
from store.taxonomy import label_for_category, normalise_query


@pytest.mark.parametrize(
    ("path", "depth", "labels", "expected"),
    [
        ("fashion/shoes/running", 1, [], "fashion"),
        ("/fashion/shoes/running/", 2, [], "fashion/shoes"),
        ("fashion", 3, [], "fashion"),
        ("", 1, [], None),
        ("toys/lego", 1, ["fashion"], None),
        ("fashion/shoes", 1, ["fashion"], "fashion"),
    ],
)
def test_label_for_category(path, depth, labels, expected):
    assert label_for_category(path, TaxonomySettings(depth=depth, labels=labels)) == expected


def test_normalise_query_folds_case_and_space():
    assert normalise_query("  Red\tSHOES  size 42 ") == "red shoes size 42"
    assert normalise_query("STRASSE") == normalise_query("straße")
