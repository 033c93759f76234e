"""Who approves and who files for an account: the people listed one by one,
and the members of the groups listed (groups follow the identity provider,
see ``services.sso_groups``).

Queries only; the permissions module answers for one person, these list the
people (for quorum counts and notifications) and the accounts (for selectors).
Each person counts once, however many ways they are listed.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from requests_app.models import AwsAccount


def _people(account: AwsAccount | int, users: str, groups: str) -> QuerySet:
    account_id = getattr(account, "pk", account)
    User = get_user_model()
    return User.objects.filter(
        Q(pk__in=User.objects.filter(**{users: account_id}).values("pk"))
        | Q(pk__in=User.objects.filter(**{f"groups__{groups}": account_id}).values("pk"))
    )


def approvers_of(account: AwsAccount | int) -> QuerySet:
    """Everyone who approves for ``account`` now, directly or through a group (each once)."""
    return _people(account, "approver_for", "approver_for")


def requesters_of(account: AwsAccount | int) -> QuerySet:
    """Everyone who files for ``account`` now, directly or through a group (each once)."""
    return _people(account, "requester_for", "requester_for")


def escalation_contacts_of(account: AwsAccount | int) -> QuerySet:
    """The people a pending request of ``account`` is escalated to (each once)."""
    return _people(account, "escalation_for", "escalation_for")


def approver_q(prefix: str, account) -> Q:
    """A filter: the user at ``prefix`` approves for ``account`` (an id or an OuterRef).

    Joins two many-valued relations: count with ``distinct=True``.
    """
    return Q(**{f"{prefix}approver_for": account}) | Q(**{f"{prefix}groups__approver_for": account})


def accounts_approved_by(user) -> QuerySet[AwsAccount]:
    """The accounts ``user`` approves for, directly or through a group (each once)."""
    return AwsAccount.objects.filter(
        Q(pk__in=AwsAccount.objects.filter(approvers=user).values("pk"))
        | Q(pk__in=AwsAccount.objects.filter(approver_groups__user=user).values("pk"))
    )


def accounts_requested_by(user) -> QuerySet[AwsAccount]:
    """The accounts ``user`` files for, directly or through a group (each once)."""
    return AwsAccount.objects.filter(
        Q(pk__in=AwsAccount.objects.filter(requesters=user).values("pk"))
        | Q(pk__in=AwsAccount.objects.filter(requester_groups__user=user).values("pk"))
    )


# What a page prefetches so that ``permissions`` answers without queries.
MEMBER_PREFETCH = ("approvers", "approver_groups", "requesters", "requester_groups")
# What the account pages and the API show besides: who a request is escalated to.
ACCOUNT_PREFETCH = (*MEMBER_PREFETCH, "escalation_groups", "escalation_users")
