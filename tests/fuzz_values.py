"""Shared strategies of the property-based fuzz tests: telling leaf values, free-form JSON, and near-valid
inputs made by changing up to three places of a valid one (near-valid inputs reach the checks deep inside a
parser, which free-form JSON rarely gets past the first of)."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cosyn.core.classes import CONSEP

FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Leaves are drawn from lists of telling values (cheap to generate, so 2,000 examples take seconds): the
# boundaries, the non-finite, the too large for a float (10**400), the wrong types.
NAMES = [*CONSEP.to_list(), "Tumor", " Epithelial ", "", "nope"]
names = st.sampled_from(NAMES)
numbers = st.one_of(
    st.sampled_from([0, -1, 1, 7, 8, 63.5, 64, 255.9, 256, 2048, 2049, -0.0, 1e-320, 1e308, float("nan"),
                     float("inf"), float("-inf"), 10**400, -(10**400), 2**63, True, False]),
    st.integers(-20, 300), st.floats(-5, 300))
scalars = st.one_of(st.sampled_from([None, True, "", "x", "12", "Point", [], {}]), numbers, names)
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(names, inner, max_size=3)),
                           max_leaves=6)


DELETE = object()  # a mutation that removes the key or item


def mutated(template: object, paths: list[tuple]) -> st.SearchStrategy:
    """`template` (valid) with up to 3 of its `paths` set to another value or deleted: near-valid inputs
    reach the checks deep inside a parser, which free-form JSON rarely gets past the first of."""
    values = st.one_of(scalars, json_values, st.just(DELETE))
    edits = st.lists(st.tuples(st.sampled_from([p for p in paths if p]), values), max_size=3)
    return edits.map(lambda changes: apply_changes(template, changes))


def apply_changes(template: object, changes: list[tuple[tuple, object]]) -> object:
    data = json.loads(json.dumps(template))  # a fresh deep copy
    for path, value in changes:
        parent = data
        for key in path[:-1]:
            try:
                parent = parent[key]
            except (KeyError, IndexError, TypeError):
                break
        else:
            key = path[-1]
            if isinstance(parent, dict) or (isinstance(parent, list) and isinstance(key, int) and key < len(parent)):
                if value is DELETE:
                    parent.pop(key, None) if isinstance(parent, dict) else parent.pop(key)
                else:
                    parent[key] = copy.deepcopy(value)  # sampled [] and {} are shared objects
    return data
