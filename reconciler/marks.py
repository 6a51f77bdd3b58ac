"""democtl's ownership marks, formatted and parsed in one place.

Every external resource carries its demo id, the managed-by mark and the installation's
owner id (external-dns' `--txt-owner-id` idea): the Supabase project name, the
Cloudflare record comment and the Kubernetes labels. A mark says whose a resource is;
`Owner.claims` says whether this installation may touch it:

- the mark of this owner id: ours;
- a mark of another owner id: foreign, never adopted, collected or deleted;
- a mark from before owner ids existed (unowned): ours only for an installation whose
  settings say `adoptUnownedMarks: true` (the one that made them), foreign otherwise.

Pure: no I/O. May import the standard library only, so that the planner, the renderer
and every adapter share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

MANAGED_BY = "democtl"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
DEMO_ID_LABEL = "demos.splits.network/id"
OWNER_ID_LABEL = "demos.splits.network/owner-id"
DEFAULT_OWNER_ID = "default"

OWNER_ID_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"  # an RFC 1123 DNS label, lowercase
DEMO_ID_MAX = 32  # model.DEMO_ID_MAX (kept here so this module imports nothing of ours)
# The dashboard refuses project names over 64 characters at creation
# (https://github.com/supabase/supabase/pull/39907; the Management API spec allows 256,
# V1CreateProjectBody.name maxLength): staying within 64 keeps every name creatable,
# displayable and editable in the dashboard.
PROJECT_NAME_MAX = 64
# Cloudflare record comments: at most 100 characters on the Free plan
# (https://developers.cloudflare.com/dns/manage-dns-records/reference/record-attributes/).
COMMENT_MAX = 100
LABEL_VALUE_MAX = 63  # Kubernetes label values

# The owner id and the demo id are joined by a character neither may contain, so that
# no name of one owner parses as another owner's (or an unowned) name.
PROJECT_SEPARATOR = "."
COMMENT_MANAGED = f"managed-by={MANAGED_BY} "
UNOWNED_COMMENT_PREFIX = f"{COMMENT_MANAGED}demo="

_DEMO = r"demo-[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
# A warm pool member: `pool-<token>` while it comes up and is migrated, then
# `pool-<token>-<migrations>` (a digest of the migrations applied). Demo ids start with
# `demo-`, so no pool id is ever a demo id: a member is never a demo's, nor an orphan.
POOL_PREFIX = "pool-"
_POOL = r"pool-(?P<token>[a-z0-9]{6})(?:-(?P<migrations>[a-z0-9]{6}))?"
_POOL_ID = re.compile(rf"^{_POOL}$")
_OWNER = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_DEMO_ID = re.compile(rf"^{_DEMO}$")
_OWNER_ID = re.compile(OWNER_ID_PATTERN)
_OWNED_NAME = re.compile(rf"^(?P<owner>{_OWNER})\.(?P<demo>{_DEMO}|pool-[a-z0-9-]+)$")
_OWNED_COMMENT = re.compile(
    rf"^managed-by=democtl owner=(?P<owner>{_OWNER}) demo=(?P<demo>{_DEMO})$"
)
_UNOWNED_COMMENT = re.compile(rf"^managed-by=democtl demo=(?P<demo>{_DEMO})$")


@dataclass(frozen=True)
class Mark:
    """Whose a resource is, as read from it: `owner_id` None for a mark made before owner ids."""

    demo_id: str
    owner_id: str | None


def _mark(demo_id: str, owner_id: str | None) -> Mark | None:
    if len(demo_id) > DEMO_ID_MAX:
        return None
    return Mark(demo_id, owner_id)


# --- Supabase: the project name -------------------------------------------------------


def project_name(prefix: str, owner_id: str, demo_id: str) -> str:
    """`<prefix><owner id>.<demo id>`, e.g. `democtl-default.demo-acme01`."""
    return f"{prefix}{owner_id}{PROJECT_SEPARATOR}{demo_id}"


def parse_project_name(prefix: str, name: str) -> Mark | None:
    """The mark in a project name; None for a project that is no democtl project."""
    if not prefix or not name.startswith(prefix):
        return None
    rest = name[len(prefix) :]
    owned = _OWNED_NAME.match(rest)
    if owned and (_DEMO_ID.match(owned["demo"]) or _POOL_ID.match(owned["demo"])):
        return _mark(owned["demo"], owned["owner"])
    if _DEMO_ID.match(rest):
        return _mark(rest, None)  # `<prefix><demo id>`: the name before owner ids
    return None


def pool_id(token: str, migrations: str | None = None) -> str:
    """`pool-<token>`, or `pool-<token>-<migrations>` once migrated."""
    return f"{POOL_PREFIX}{token}" + (f"-{migrations}" if migrations else "")


def is_pool_id(text: str) -> bool:
    return _POOL_ID.match(text) is not None


def pool_parts(text: str) -> tuple[str, str | None] | None:
    """(token, migrations digest or None) of a pool id; None for anything else."""
    found = _POOL_ID.match(text)
    return (found["token"], found["migrations"]) if found else None


# --- Cloudflare: the record comment ---------------------------------------------------


def record_comment(owner_id: str, demo_id: str) -> str:
    """`managed-by=democtl owner=<owner id> demo=<demo id>`."""
    return f"{COMMENT_MANAGED}owner={owner_id} demo={demo_id}"


def parse_record_comment(comment: str | None) -> Mark | None:
    """The mark in a record comment, matched exactly (case matters: Cloudflare's comment
    filters are case-insensitive, our mark is not); None for any other comment."""
    text = comment or ""
    owned = _OWNED_COMMENT.match(text)
    if owned:
        return _mark(owned["demo"], owned["owner"])
    unowned = _UNOWNED_COMMENT.match(text)
    return _mark(unowned["demo"], None) if unowned else None


# --- Kubernetes: the labels -----------------------------------------------------------


def labels(owner_id: str, demo_id: str) -> dict[str, str]:
    """The ownership labels of a namespace or Secret (render adds its own beside them)."""
    return {MANAGED_BY_LABEL: MANAGED_BY, DEMO_ID_LABEL: demo_id, OWNER_ID_LABEL: owner_id}


def parse_labels(found: Mapping[str, str] | None) -> Mark | None:
    """The mark in an object's labels; None without democtl's managed-by and demo id."""
    found = found or {}
    demo_id = found.get(DEMO_ID_LABEL, "")
    if found.get(MANAGED_BY_LABEL) != MANAGED_BY or not _DEMO_ID.match(demo_id):
        return None
    owner_id = found.get(OWNER_ID_LABEL)
    if owner_id is not None and not _OWNER_ID.match(owner_id):
        # A garbled owner id is nobody's id: never ours, and not unowned either.
        return _mark(demo_id, "")
    return _mark(demo_id, owner_id)


# --- the installation -----------------------------------------------------------------


def owner_id_problem(owner_id: str, prefix: str) -> str | None:
    """Why `owner_id` cannot go into every mark (with this project prefix); None if it can."""
    if not _OWNER_ID.match(owner_id):
        return "must be a lowercase DNS label (a-z, 0-9 and '-', starting and ending alnum)"
    limits = {
        f"the Supabase project name ({prefix!r} + owner id + '.' + a demo id of up to "
        f"{DEMO_ID_MAX} characters, at most {PROJECT_NAME_MAX})": PROJECT_NAME_MAX
        - len(prefix)
        - len(PROJECT_SEPARATOR)
        - DEMO_ID_MAX,
        f"the Cloudflare record comment (at most {COMMENT_MAX} characters)": COMMENT_MAX
        - len(record_comment("", "d" * DEMO_ID_MAX)),
        f"a Kubernetes label value (at most {LABEL_VALUE_MAX} characters)": LABEL_VALUE_MAX,
    }
    room, where = min((n, text) for text, n in limits.items())
    if len(owner_id) > room:
        return f"is {len(owner_id)} characters; at most {max(room, 0)} fit into {where}"
    return None


@dataclass(frozen=True)
class Owner:
    """This installation: its owner id, and whether it adopts marks without one."""

    id: str = DEFAULT_OWNER_ID
    adopt_unowned: bool = False

    def claims(self, mark: Mark | None) -> str | None:
        """The demo id of a resource this installation owns; None for one it must not touch."""
        if mark is None:
            return None
        if mark.owner_id == self.id or (mark.owner_id is None and self.adopt_unowned):
            return mark.demo_id
        return None

    def project_name(self, prefix: str, demo_id: str) -> str:
        return project_name(prefix, self.id, demo_id)

    def project_demo(self, prefix: str, name: str) -> str | None:
        return self.claims(parse_project_name(prefix, name))

    def record_comment(self, demo_id: str) -> str:
        return record_comment(self.id, demo_id)

    def record_demo(self, comment: str | None) -> str | None:
        return self.claims(parse_record_comment(comment))

    def record_comment_prefixes(self) -> tuple[str, ...]:
        """The `comment.startswith` filters that list every record this installation owns."""
        owned = f"{COMMENT_MANAGED}owner={self.id} demo="
        return (owned, UNOWNED_COMMENT_PREFIX) if self.adopt_unowned else (owned,)

    def labels(self, demo_id: str) -> dict[str, str]:
        return labels(self.id, demo_id)

    def label_demo(self, found: Mapping[str, str] | None) -> str | None:
        return self.claims(parse_labels(found))
