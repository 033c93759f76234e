"""A real OpenID Connect provider for the single sign-on tests.

django-oauth-toolkit's provider in a project of its own, run as a separate
process on loopback with its own SQLite database (``python -m
tests.e2e.oidc_provider``). Its people are listed in a JSON directory file
the tests rewrite between logins::

    {"kim": {"password": "...", "claims": {"sub": "...", "preferred_username": "...",
                                           "email": "...", "email_verified": true,
                                           "groups": ["remote-approvers"]}}}

so a test can change what the provider says about a person (their name, their
e-mail, whether it is verified, their groups) while the subject stays.
"""
