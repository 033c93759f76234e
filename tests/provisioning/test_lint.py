"""Linting the grant's documents: a wrong document is caught, the runbook's plan is clean."""
import copy

import pytest

from provisioning.documents import build_plan
from provisioning.lint import ERROR, WARNING, blocking_findings, lint_plan, lint_policy, severity_of
from tests.provisioning.test_documents import KEY, SECRET, runbook_spec


@pytest.fixture(scope="module")
def plan() -> dict:
    return build_plan(runbook_spec())


def test_runbook_plan_lints_clean(plan):
    assert lint_plan(plan) == []


@pytest.mark.parametrize("engine", ["postgres", "oracle", "sqlserver", "docdb"])
def test_plans_for_other_engines_and_partitions_lint_clean(engine):
    assert lint_plan(build_plan(runbook_spec(engine=engine))) == []


def test_china_partition_plan_lints_clean():
    spec = runbook_spec(
        partition="aws-cn",
        region="cn-north-1",
        secret_arn=SECRET.replace("arn:aws:", "arn:aws-cn:").replace("eu-west-1", "cn-north-1"),
        kms_key_arn=KEY.replace("arn:aws:", "arn:aws-cn:").replace("eu-west-1", "cn-north-1"),
    )
    assert lint_plan(build_plan(spec)) == []


def test_misspelt_action_in_role_policy_is_an_error(plan):
    broken = copy.deepcopy(plan)
    broken["role_inline_policy"]["Statement"][0]["Action"][0] = "secretsmanager:GetSecretValu"
    findings = lint_plan(broken)
    assert [(f.document, f.issue, f.severity) for f in findings] == [
        ("role_inline_policy", "UNKNOWN_ACTION", ERROR)
    ]
    assert "secretsmanager:GetSecretValu" in findings[0].detail
    assert blocking_findings(findings) == findings


def test_secret_arn_on_kms_actions_is_a_resource_mismatch(plan):
    broken = copy.deepcopy(plan)
    broken["role_inline_policy"]["Statement"][1]["Resource"] = SECRET
    (finding,) = [f for f in lint_plan(broken) if f.document == "role_inline_policy"]
    assert (finding.document, finding.issue, finding.severity) == ("role_inline_policy", "RESOURCE_MISMATCH", ERROR)
    assert "kms:Decrypt needs a resource like arn:*:kms:*:*:key/*" in finding.detail


def test_unknown_action_in_the_trust_policy_is_caught(plan):
    # A trust policy has no Resource; linting it as-is would stop at "MALFORMED"
    # and never look at the action.
    broken = copy.deepcopy(plan)
    broken["role_trust_policy"]["Statement"][0]["Action"] = "sts:AssumeRol"
    assert [(f.document, f.issue) for f in lint_plan(broken)] == [("role_trust_policy", "UNKNOWN_ACTION")]


def test_wrong_actions_in_the_resource_statements_are_caught(plan):
    broken = copy.deepcopy(plan)
    broken["secret_policy_statement"]["Action"] = ["secretsmanager:GetSecretValue", "secretsmanager:ReadSecret"]
    broken["key_policy_statement"]["Action"] = ["kms:Decrypt", "secretsmanager:GetSecretValue"]
    findings = {(f.document, f.issue) for f in lint_plan(broken)}
    assert findings == {
        ("secret_policy_statement", "UNKNOWN_ACTION"),
        # "*" in a key policy means the key, so a Secrets Manager action there is a mismatch.
        ("key_policy_statement", "RESOURCE_MISMATCH"),
        # kms:ViaService means nothing to a Secrets Manager action.
        ("key_policy_statement", "UNKNOWN_CONDITION_FOR_ACTION"),
    }


def test_principal_that_is_not_an_arn_is_caught(plan):
    broken = copy.deepcopy(plan)
    broken["secret_policy_statement"]["Principal"] = {"AWS": "dms-cross-account-secret-access"}
    assert [(f.issue, f.severity) for f in lint_plan(broken)] == [("UNKNOWN_PRINCIPAL", ERROR)]


def test_key_statement_without_key_arn_only_warns_about_resource_star():
    statement = build_plan(runbook_spec())["key_policy_statement"]
    findings = lint_policy(
        {"Version": "2012-10-17", "Statement": [statement]}, document_name="key_policy_statement", kind="key"
    )
    assert [(f.issue, f.severity) for f in findings] == [("RESOURCE_STAR", WARNING)]
    assert blocking_findings([f.to_dict() for f in findings]) == []


def test_severity_follows_parliament_for_unlisted_issues():
    assert severity_of("RESOURCE_STAR", "LOW") == WARNING
    assert severity_of("SOMETHING_NEW", "HIGH") == ERROR
    assert severity_of("UNKNOWN_ACTION", "LOW") == ERROR


def test_unknown_kind_is_refused(plan):
    with pytest.raises(ValueError):
        lint_policy(plan["role_inline_policy"], document_name="x", kind="bucket")
