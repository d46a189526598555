"""Schemathesis hooks of tools/api-fuzz (loaded through SCHEMATHESIS_HOOKS).

`role_conformance` holds each answer to the role the operation's `x-required-role` names, for the token the request
carried: the run's (API_FUZZ_TOKEN, whose role is API_FUZZ_ROLE: viewer, operator or admin), or none or another one
(schemathesis sends some requests without the run's token, to see that auth is not ignored). Without the run's
token, every operation that needs a role answers 401 `unauthorized`; with a token below the role, 403 `forbidden`;
with the role or a higher one, neither. 503 `unavailable` (too many requests at once) may come before either, as
the document says.
"""

import os

import schemathesis

RANKS = {"none": 0, "viewer": 1, "operator": 2, "admin": 3}


@schemathesis.check
def role_conformance(ctx, response, case):
    """The answer is the one the token's role gets for the operation's x-required-role."""
    if response.request.method.upper() != case.operation.method.upper():
        return None  # a method the path does not serve (schemathesis tries a few): no route, no auth
    token = os.environ.get("API_FUZZ_TOKEN", "")
    sent = response.request.headers.get("Authorization")
    role = os.environ.get("API_FUZZ_ROLE") if token and sent == f"Bearer {token}" else "none"
    needed = case.operation.definition.raw.get("x-required-role")
    if role not in RANKS or needed not in RANKS or needed == "none" or response.status_code == 503:
        return None
    if role == "none":
        expected, code = 401, "unauthorized"
    elif RANKS[role] < RANKS[needed]:
        expected, code = 403, "forbidden"
    else:
        if response.status_code in (401, 403):
            raise AssertionError(
                f"{case.operation.label} needs {needed}; a {role} token was refused with {response.status_code}"
            )
        return None
    if response.status_code != expected:
        raise AssertionError(
            f"{case.operation.label} needs {needed}: a caller with {role} must get {expected} {code}, "
            f"not {response.status_code}"
        )
    try:
        answered = response.json().get("code")
    except Exception:  # noqa: BLE001 - any body that is not a JSON object is wrong here
        answered = None
    if answered != code:
        raise AssertionError(f"{case.operation.label}: a {expected} must carry code {code}, not {answered!r}")
    return None
