"""Steps on the DataLake side: the IAM role DMS assumes to read the secret."""

from __future__ import annotations

import json

from provisioning.aws_calls import AwsCalls
from provisioning.clients import GrantClients
from provisioning.documents import ROLE_INLINE_POLICY_NAME, role_inline_policy, role_trust_policy
from provisioning.ownership import describe_owner, instance_tag, is_owned, needs_adoption, owner_tags
from provisioning.resources import RoleState, read_role, read_role_policy
from provisioning.spec import GrantSpec
from provisioning.steps.result import StepResult


def _not_ours(calls: AwsCalls, spec: GrantSpec, role: RoleState):
    return calls.permanent(
        f"The role {spec.role_name} already exists in account {spec.datalake.account_id} and belongs to "
        f"{describe_owner(role.tags)}; the portal never takes over a role it did not create for this request. "
        "Choose another role name.",
        diagnosis="role_name_taken",
    )


def _adopt(calls: AwsCalls, iam, spec: GrantSpec, role: RoleState) -> bool:
    """Tag a role this grant made before instance ids with the instance id; True if it did.

    The provisioner role may change only roles tagged with its instance id,
    so the tag goes on before anything else is written.
    """
    if not needs_adoption(role.tags, spec):
        return False
    calls(iam, "TagRole", RoleName=spec.role_name, Tags=instance_tag(spec))
    return True


def create_role(spec: GrantSpec, *, clients: GrantClients) -> StepResult:
    """Create the grant's role (runbook document 1) or bring it back to the plan.

    A missing role is created with the trust policy and the owner tag, then
    given its inline policy. The role is not read first: when CreateRole
    answers that the name is taken, the role is read and its owner tag
    checked before anything else is written. An existing role tagged for this grant has its
    trust and inline policies rewritten only where they differ. A role with
    the same name and any other owner (another request, or the same request
    id of another portal instance) fails with ``role_name_taken``.
    Outputs ``role_arn`` and ``role_id`` (the AROA... id AWS stores in
    resource policies), and ``target``: the role ARN and the documents written.
    """
    calls = AwsCalls()
    iam = clients.datalake("iam")
    trust = role_trust_policy(spec)
    inline = role_inline_policy(spec)
    calls.check_size("trust_policy", trust)
    calls.check_size("role_inline_policies", [inline])
    desired = {"trust_policy": trust, "inline_policy": inline}

    # No read first: AWS answers a taken name with EntityAlreadyExists, and
    # only then is the role read to see whose it is.
    created = calls(
        iam,
        "CreateRole",
        taken_codes=("EntityAlreadyExists",),
        RoleName=spec.role_name,
        AssumeRolePolicyDocument=json.dumps(trust),
        Description=f"DMS reads {spec.secret_arn} (dms-access-portal {spec.instance_id} request {spec.grant_id})"[:1000],
        Tags=owner_tags(spec),
    )
    if created is not None:
        calls(
            iam,
            "PutRolePolicy",
            RoleName=spec.role_name,
            PolicyName=ROLE_INLINE_POLICY_NAME,
            PolicyDocument=json.dumps(inline),
        )
        role = created["Role"]
        return StepResult(
            name="create_role",
            changed=True,
            before=None,
            after=desired,
            aws_request_ids=calls.request_ids, aws_calls=calls.calls,
            outputs={
                "role_arn": role["Arn"],
                "role_id": role["RoleId"],
                "target": {"arn": role["Arn"], "sid": None, "document": desired},
            },
        )

    role = read_role(calls, iam, spec.role_name)
    if role is None:
        raise calls.retryable(
            f"The role {spec.role_name} existed when the portal created it and was gone when it read it; "
            "the retry creates it again",
            diagnosis="role_name_taken",
        )
    if not is_owned(role.tags, spec):
        raise _not_ours(calls, spec, role)
    changed = _adopt(calls, iam, spec, role)
    current_inline = read_role_policy(calls, iam, spec.role_name)
    before = {"trust_policy": role.trust_policy, "inline_policy": current_inline}
    if role.trust_policy != trust:
        calls(iam, "UpdateAssumeRolePolicy", RoleName=spec.role_name, PolicyDocument=json.dumps(trust))
        changed = True
    if current_inline != inline:
        calls(
            iam,
            "PutRolePolicy",
            RoleName=spec.role_name,
            PolicyName=ROLE_INLINE_POLICY_NAME,
            PolicyDocument=json.dumps(inline),
        )
        changed = True
    return StepResult(
        name="create_role",
        changed=changed,
        before=before,
        after=desired,
        aws_request_ids=calls.request_ids, aws_calls=calls.calls,
        outputs={
            "role_arn": role.arn,
            "role_id": role.role_id,
            "target": {"arn": role.arn, "sid": None, "document": desired},
        },
    )


def delete_role(spec: GrantSpec, *, clients: GrantClients) -> StepResult:
    """Delete the grant's inline policy and role, if the role is this grant's.

    A missing role is success. A role owned by anyone else is left alone
    (``outputs["skipped"]`` says why): revoke never deletes what the grant
    did not create.
    """
    calls = AwsCalls()
    iam = clients.datalake("iam")
    role = read_role(calls, iam, spec.role_name)
    if role is None:
        return StepResult(name="delete_role", changed=False, aws_request_ids=calls.request_ids, aws_calls=calls.calls)
    if not is_owned(role.tags, spec):
        return StepResult(
            name="delete_role",
            changed=False,
            aws_request_ids=calls.request_ids, aws_calls=calls.calls,
            outputs={"skipped": f"role {spec.role_name} is not owned by request {spec.grant_id} of this portal"},
        )
    _adopt(calls, iam, spec, role)
    inline = read_role_policy(calls, iam, spec.role_name)
    if inline is not None:
        calls(iam, "DeleteRolePolicy", missing_ok=True, RoleName=spec.role_name, PolicyName=ROLE_INLINE_POLICY_NAME)
    calls(iam, "DeleteRole", missing_ok=True, RoleName=spec.role_name)
    return StepResult(
        name="delete_role",
        changed=True,
        before={"trust_policy": role.trust_policy, "inline_policy": inline},
        after=None,
        aws_request_ids=calls.request_ids,
        aws_calls=calls.calls,
        outputs={"role_arn": role.arn, "role_id": role.role_id},
    )
