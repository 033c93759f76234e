"""The API tokens page: a person's own tokens, made and revoked here.

A new token is shown in the answer to the POST that made it, and only there:
never through the messages framework (which keeps its text in the session or
a cookie), never in a redirect, and the answer is not cached.
"""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from requests_app import services
from requests_app.errors import DomainError, NotFoundForUser, ValidationFailed
from requests_app.models import API_TOKEN_NAME_MAX_LENGTH, ApiToken


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=API_TOKEN_NAME_MAX_LENGTH,
        help_text="What the token is for, e.g. “nightly-sync”. Decisions made with it name it in the audit log.",
    )
    expires_days = forms.IntegerField(
        label="Expires in (days)",
        min_value=1,
        max_value=settings.API_TOKEN_MAX_EXPIRY_DAYS,
        initial=settings.API_TOKEN_DEFAULT_EXPIRY_DAYS,
        help_text=f"1 to {settings.API_TOKEN_MAX_EXPIRY_DAYS} days.",
    )


def _client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def _page(request, form: ApiTokenForm, *, new_token: str = "", created: ApiToken | None = None, status: int = 200):
    tokens = ApiToken.objects.filter(user=request.user).order_by("-created", "-id")
    return render(
        request,
        "web/tokens.html",
        {"form": form, "tokens": tokens, "new_token": new_token, "created": created, "now": timezone.now()},
        status=status,
    )


@never_cache
@login_required
def api_tokens(request):
    if request.method != "POST":
        return _page(request, ApiTokenForm())
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            token, text = services.api_token_create(
                user=request.user, source_ip=_client_ip(request), **form.cleaned_data
            )
        except ValidationFailed as failure:
            for field, field_messages in failure.errors.items():
                for message in field_messages:
                    form.add_error(field if field in form.fields else None, message)
        except DomainError as error:
            form.add_error(None, error.message)
        else:
            return _page(request, ApiTokenForm(), new_token=text, created=token)
    return _page(request, form, status=400)


@login_required
@require_POST
def api_token_revoke(request, token_id: int):
    try:
        token = services.api_token_revoke(user=request.user, token_id=token_id, source_ip=_client_ip(request))
    except NotFoundForUser:
        raise Http404("No such token.") from None
    messages.success(request, f"Token “{token.name}” revoked: it no longer works.")
    return redirect("web:api_tokens")
