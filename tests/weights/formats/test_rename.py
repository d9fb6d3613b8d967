"""The checkpoint-key renamer: first matching rule wins, functions of the match, no match."""

from maskrcnn.weights.formats import rename_key

RULES = [
    (r"^a\.(\d+)\.", r"b.\1."),
    (r"^a\.", "c."),  # also matches "a.0.", but the rule above comes first
    (r"^m(\d+)\.", lambda m: f"n.{int(m[1]) - 1}."),
]


def test_first_matching_rule_wins():
    assert rename_key("a.3.weight", RULES) == "b.3.weight"
    assert rename_key("a.weight", RULES) == "c.weight"


def test_replacement_may_be_a_function_of_the_match():
    assert rename_key("m1.bias", RULES) == "n.0.bias"


def test_a_key_no_rule_matches_is_unchanged():
    assert rename_key("x.a.1.weight", RULES) == "x.a.1.weight"
