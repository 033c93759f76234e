"""REST API for a Remote account's approval rules (``services.rules``).

    GET  /api/v1/rules/                     the rules you may see (?account=<12 digits>)
    POST /api/v1/rules/                     propose a new rule (approvers of its account)
    GET  /api/v1/rules/{id}/                one rule, every version
    POST /api/v1/rules/{id}/change/         propose new criteria
    POST /api/v1/rules/{id}/disable/        propose to disable it
    POST /api/v1/rules/{id}/approve/        approve the proposed version you were shown
    POST /api/v1/rules/{id}/reject/         reject it (a comment is required)
    GET  /api/v1/requests/{id}/rule-decisions/  which rule (and version) approved a request

Who may is checked first (404 for whoever may not see the account's rules,
403 for whoever sees them but may not do this), then the body; each write
calls one service, which checks again under the rule's row lock.
"""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from requests_app import selectors, services
from requests_app.actions import (
    RULE_ACTIONS,
    RuleAction,
    RuleProposeSerializer,
    check_rule_proposal,
    rule_action_arguments,
)
from requests_app.api import serializers as s
from requests_app.api.views import (
    ERROR_401,
    ERROR_403,
    ERROR_404,
    ERROR_409,
    ERRORS_400,
    REQUEST_ID,
    _request_id,
    _source_ip,
)
from requests_app.models import ApprovalRule, ApprovalRuleVersion, RuleDecision

RULE_ID = OpenApiParameter("id", OpenApiTypes.INT64, OpenApiParameter.PATH, description="The rule's id.")
ERROR_404_RULE = OpenApiResponse(s.ErrorSerializer, description="No such rule, or not one of your accounts'.")


class RuleVersionSerializer(serializers.ModelSerializer):
    datalake_accounts = serializers.SlugRelatedField(slug_field="account_id", many=True, read_only=True)
    engines = serializers.ListField(child=serializers.CharField(), read_only=True)
    proposed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", many=True, read_only=True)
    rejected_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = ApprovalRuleVersion
        fields = [
            "number", "state", "enabled", "datalake_accounts", "engines", "secret_name_prefix", "max_expiry_days",
            "comment", "proposed_by", "approved_by", "rejected_by", "rejection_comment", "created_at", "decided_at",
        ]  # fmt: skip
        read_only_fields = fields


class RuleSerializer(serializers.ModelSerializer):
    account_id = serializers.CharField(source="remote_account.account_id", read_only=True)
    in_force = serializers.SerializerMethodField(help_text="The version in force (null before the first is approved).")
    proposed = serializers.SerializerMethodField(help_text="The version awaiting the approvers, if any.")
    versions = RuleVersionSerializer(many=True, read_only=True, help_text="Every version, newest first.")

    class Meta:
        model = ApprovalRule
        fields = ["id", "account_id", "name", "in_force", "proposed", "versions", "created_at"]
        read_only_fields = fields

    def _version(self, rule: ApprovalRule, which: int) -> dict | None:
        version = selectors.rule_versions_of(rule)[which]
        return None if version is None else RuleVersionSerializer(version).data

    @extend_schema_field(RuleVersionSerializer(allow_null=True))
    def get_in_force(self, rule: ApprovalRule) -> dict | None:
        return self._version(rule, 0)

    @extend_schema_field(RuleVersionSerializer(allow_null=True))
    def get_proposed(self, rule: ApprovalRule) -> dict | None:
        return self._version(rule, 1)


class RuleDecisionSerializer(serializers.ModelSerializer):
    rule_id = serializers.IntegerField(source="rule_version.rule_id", read_only=True)
    rule = serializers.CharField(source="rule_version.rule.name", read_only=True)
    version = serializers.IntegerField(source="rule_version.number", read_only=True)

    class Meta:
        model = RuleDecision
        fields = ["rule_id", "rule", "version", "plan_hash", "approval_round", "whole_decision", "created_at"]
        read_only_fields = fields


def _rule_id(value: str) -> int:
    return _request_id(value)  # the same rule for any id in a path


class RuleListView(APIView):
    @extend_schema(
        operation_id="rules_list",
        summary="The approval rules of the Remote accounts you approve for (administrators: all)",
        parameters=[
            OpenApiParameter(
                "account", {"type": "string", "pattern": "^[0-9]{12}$"}, OpenApiParameter.QUERY, required=False,
                description="Only this Remote account's rules.",
            )
        ],
        responses={200: RuleSerializer(many=True), 400: ERRORS_400, 401: ERROR_401},
    )
    def get(self, request):
        account = request.query_params.get("account")
        if account is not None and not (account.isascii() and account.isdigit() and len(account) == 12):
            # Sent, it must be an account id: an empty one is refused, as the schema says.
            raise exceptions.ValidationError({"account": ["A 12-digit account id."]})
        rules = selectors.rules_visible_to(user=request.user, account_id=account or None)
        return Response(RuleSerializer(rules, many=True).data)

    @extend_schema(
        operation_id="rules_propose",
        summary="Propose a new approval rule for a Remote account",
        description="Approvers of the account only (checked first: anyone else, or an account that is not a "
        "registered Remote account, gets 403 whatever the rest of the body). The rule is version 1, proposed: "
        "it approves nothing until the account's required number of its other approvers approved it.",
        request=RuleProposeSerializer,
        responses={201: RuleSerializer, 400: ERRORS_400, 401: ERROR_401, 403: ERROR_403},
    )
    def post(self, request):
        check_rule_proposal(user=request.user, data=request.data)
        body = RuleProposeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = services.rule_propose(user=request.user, source_ip=_source_ip(request), **body.validated_data)
        rule = selectors.rule_detail_for(user=request.user, rule_id=version.rule_id)
        return Response(RuleSerializer(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    @extend_schema(
        operation_id="rules_retrieve",
        summary="One approval rule with every version",
        parameters=[RULE_ID],
        responses={200: RuleSerializer, 401: ERROR_401, 404: ERROR_404_RULE},
    )
    def get(self, request, id: str):
        return Response(RuleSerializer(selectors.rule_detail_for(user=request.user, rule_id=_rule_id(id))).data)


class _RuleActionView(APIView):
    action_name = ""

    def post(self, request, id: str):
        rule_id = _rule_id(id)
        action = RULE_ACTIONS[self.action_name]
        action.check(user=request.user, rule_id=rule_id)
        arguments = rule_action_arguments(action, request.data)
        action.service(rule_id=rule_id, user=request.user, source_ip=_source_ip(request), **arguments)
        return Response(RuleSerializer(selectors.rule_detail_for(user=request.user, rule_id=rule_id)).data)


def _rule_action(action: RuleAction, summary: str, description: str):
    operation = extend_schema(
        operation_id=f"rules_{action.name}",
        summary=summary,
        description=description,
        parameters=[RULE_ID],
        request=action.body,
        responses={200: RuleSerializer, 400: ERRORS_400, 401: ERROR_401, 403: ERROR_403, 404: ERROR_404_RULE,
                   409: ERROR_409},  # fmt: skip
    )

    def declare(view):
        view.action_name = action.name
        return extend_schema_view(post=operation)(view)

    return declare


@_rule_action(RULE_ACTIONS["change"], "Propose new criteria for a rule",
              "Approvers of the rule's account. A new version, proposed; 409 while another change is proposed.")
class RuleChangeView(_RuleActionView):
    pass


@_rule_action(RULE_ACTIONS["disable"], "Propose to disable a rule",
              "Approvers of the rule's account. Once approved like any change, the rule approves nothing.")
class RuleDisableView(_RuleActionView):
    pass


@_rule_action(RULE_ACTIONS["approve"], "Approve the proposed version of a rule",
              "Approvers of the rule's account other than the version's proposer. `version` names the version you "
              "were shown (409 if another is proposed now). It comes into force once the account's "
              "`required_approvals` approved it.")
class RuleApproveView(_RuleActionView):
    pass


@_rule_action(RULE_ACTIONS["reject"], "Reject the proposed version of a rule",
              "Approvers of the rule's account (its proposer withdraws it this way). The version in force stays.")
class RuleRejectView(_RuleActionView):
    pass


class RequestRuleDecisionsView(APIView):
    @extend_schema(
        operation_id="requests_rule_decisions",
        summary="The approval rules that approved the request, with the version and plan each approved",
        parameters=[REQUEST_ID],
        responses={200: RuleDecisionSerializer(many=True), 401: ERROR_401, 404: ERROR_404},
    )
    def get(self, request, id: str):
        access_request = selectors.request_detail_for(user=request.user, request_id=_request_id(id))
        return Response(RuleDecisionSerializer(selectors.rule_decisions_of(access_request), many=True).data)
