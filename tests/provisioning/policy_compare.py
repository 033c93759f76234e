"""Semantic comparison of policy documents for the golden tests.

IAM treats ``"Action": "x"`` and ``"Action": ["x"]`` alike and does not care
about the order of list entries or statements; this normaliser applies
exactly those equivalences and nothing else.
"""
import json

# Elements whose value may be one string or a list of strings.
_SCALAR_OR_LIST = {"Action", "NotAction", "Resource", "NotResource", "AWS", "Service", "Federated", "CanonicalUser"}


def _sort_key(value):
    return json.dumps(value, sort_keys=True)


def normalise(value, key=None, in_condition=False):
    """Return a canonical form of a policy (or part of one)."""
    if isinstance(value, dict):
        return {
            k: normalise(v, k, in_condition or k == "Condition")
            for k, v in value.items()
        }
    if isinstance(value, list):
        items = [normalise(v, None, in_condition) for v in value]
        return sorted(items, key=_sort_key)
    if isinstance(value, str) and (key in _SCALAR_OR_LIST or (in_condition and key is not None and ":" in key)):
        return [value]
    return value
