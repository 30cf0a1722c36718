"""Who may do what on the team's MLflow server: MLflow's basic-auth app, its roles, and the one rule it lacks.

MLflow's permissions cannot tell aliases apart: whoever may register a version of a model (EDIT on it) may also move
its `champion`. The CI bot registers challengers, so it holds EDIT; `authenticate` (the server's
`authorization_function` in auth.ini, run before MLflow's own permission checks) keeps the protected aliases to
admins and the roles that may promote.

Roles (MLflow RBAC, workspace `default`), created by `make services`:
- wildtrain-maintainer: EDIT on every experiment, MANAGE on every registered model; moves `champion`;
- wildtrain-ci: EDIT on every experiment and registered model (logs runs, registers versions, sets `challenger`);
  a version its gate would promote is refused (a maintainer promotes it);
- wildtrain-ci-promote: the same, and it may move `champion` through the gate (the CI bot's setting: which of the
  two roles it holds, `make services-user NAME=ci-bot ROLE=...`);
- wildtrain-reader: READ on every experiment and registered model.
A user without a role sees nothing (default_permission NO_PERMISSIONS); an anonymous request is a 401.
"""

from __future__ import annotations

MAINTAINER, CI, CI_PROMOTE, READER = ("wildtrain-maintainer", "wildtrain-ci", "wildtrain-ci-promote",
                                      "wildtrain-reader")
ROLE_GRANTS = {
    MAINTAINER: {"experiment": "EDIT", "registered_model": "MANAGE"},
    CI: {"experiment": "EDIT", "registered_model": "EDIT"},
    CI_PROMOTE: {"experiment": "EDIT", "registered_model": "EDIT"},
    READER: {"experiment": "READ", "registered_model": "READ"},
}
PROMOTERS = {MAINTAINER, CI_PROMOTE}  # besides admins: who may move a protected alias
PROTECTED_ALIASES = ("champion",)
WORKSPACE = "default"


def may_promote(username: str) -> bool:
    from mlflow.server.auth import store

    user = store.get_user(username)
    if user.is_admin:
        return True
    return any(role.name in PROMOTERS for role in store.list_user_roles(user.id))


def protected_alias_move(request) -> str | None:
    """The protected alias a set/delete-alias request moves, else None."""
    if not request.path.endswith("/registered-models/alias") or request.method not in ("POST", "DELETE", "PATCH"):
        return None
    body = request.get_json(silent=True) or {}
    alias = body.get("alias") or request.args.get("alias")
    return alias if alias in PROTECTED_ALIASES else None


def authenticate():
    """MLflow's basic-auth check, then: a protected alias moves only for those who may promote (else 403)."""
    from flask import Response, request
    from mlflow.server.auth import authenticate_request_basic_auth

    result = authenticate_request_basic_auth()
    if isinstance(result, Response):
        return result
    alias = protected_alias_move(request)
    if alias is not None and not may_promote(result.username):
        return Response(f"Permission denied: moving alias '{alias}' takes the {MAINTAINER} or {CI_PROMOTE} "
                        f"role (user '{result.username}' holds neither)", status=403, mimetype="text/plain")
    return result
