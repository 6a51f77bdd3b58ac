"""Git as the state store: the only package that imports git.

Owns every git operation of democtl, one noun per module:

- `load`: the state at HEAD (settings, demo and status files, creation times)
- `commit`: one cycle's file writes and its commit, with a message that tells the story
- `remote`: fast-forward syncs, pushes that never force, re-planning on rejection,
  and the preflight of the remote (`check_remote`)
- `lock`: the writer lock on the remote, `refs/democtl/lock`: a short lease, renewed
- `audit`: the audit trail (`history`), read back from the main line
- `branch`: demo branches for `democtl create`/`extend`/`delete`
- `publish`: pushing a demo branch for its pull request, and taking it back
- `scratch`: local mode's scratch and preview state repositories
- `_git`: what they share (running git, the errors, `Identity`); private

This module is the package's face: it re-exports the public names, so callers
write `from reconciler import gitstate` and `gitstate.load_state(...)` and need
no submodule. No submodule is named like a name it exports (`sync`, `history`):
`import reconciler.gitstate.sync` would then give the function. A test that
patches a name patches it where it is looked up: `held_lock` calls
`gitstate.lock.release_lock`. Imports only its own submodules; nothing else in
democtl may import git (an import-linter contract says so).
"""

from __future__ import annotations

from reconciler.gitstate._git import (
    DEFAULT_IDENTITY,
    RENDERED_DIR,
    GitStateError,
    Identity,
    LockHeld,
    LockLost,
    PushError,
    PushGaveUp,
    SyncError,
)
from reconciler.gitstate.audit import HistoryEvent, history, last_cycle
from reconciler.gitstate.branch import (
    author_email,
    commit_on_new_branch,
    commit_paths,
    start_branch,
)
from reconciler.gitstate.commit import (
    SUBJECT_MAX,
    DemoChange,
    commit_cycle,
    commit_message,
    removal_writes,
    write_files,
)
from reconciler.gitstate.load import (
    State,
    creation_times,
    load_state,
    read_statuses,
    uncommitted_demo_files,
)
from reconciler.gitstate.lock import (
    LOCK_REF,
    Lease,
    Lock,
    LockRecord,
    UnlockResult,
    acquire_lock,
    held_lease,
    held_lock,
    pid_alive,
    read_lock,
    release_lock,
    renew_lock,
    unlock,
)
from reconciler.gitstate.publish import (
    PublishedBranch,
    branch_exists,
    drop_local_branch,
    mask_credentials,
    publish_branch,
    remote_branches,
    remote_url,
    withdraw_branch,
)
from reconciler.gitstate.remote import (
    PUSH_BUDGET,
    PushResult,
    RemoteCheck,
    check_remote,
    push,
    push_with_replan,
    sync,
)
from reconciler.gitstate.scratch import preview_state_repo, scratch_state_repo

__all__ = [
    "DEFAULT_IDENTITY",
    "LOCK_REF",
    "PUSH_BUDGET",
    "RENDERED_DIR",
    "SUBJECT_MAX",
    "DemoChange",
    "GitStateError",
    "HistoryEvent",
    "Identity",
    "Lease",
    "Lock",
    "LockHeld",
    "LockLost",
    "LockRecord",
    "PublishedBranch",
    "PushError",
    "PushGaveUp",
    "PushResult",
    "RemoteCheck",
    "State",
    "SyncError",
    "UnlockResult",
    "acquire_lock",
    "author_email",
    "branch_exists",
    "check_remote",
    "commit_cycle",
    "commit_message",
    "commit_on_new_branch",
    "commit_paths",
    "creation_times",
    "drop_local_branch",
    "held_lease",
    "held_lock",
    "history",
    "last_cycle",
    "load_state",
    "mask_credentials",
    "pid_alive",
    "preview_state_repo",
    "publish_branch",
    "push",
    "push_with_replan",
    "read_lock",
    "read_statuses",
    "release_lock",
    "remote_branches",
    "remote_url",
    "removal_writes",
    "renew_lock",
    "scratch_state_repo",
    "start_branch",
    "sync",
    "uncommitted_demo_files",
    "unlock",
    "withdraw_branch",
    "write_files",
]
