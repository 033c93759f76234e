"""The AWS engine of the DMS Access Portal.

Everything that talks to AWS lives here: ARNs, the policy documents of a grant,
statement merging, the client factory, the idempotent steps, preflight and the
access evaluator. This package imports nothing from ``requests_app`` and no
Django models, so it can be read, tested and reused on its own.
"""
