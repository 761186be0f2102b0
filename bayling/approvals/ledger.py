"""The approval trail: each approver's own append-only ledger of records, which only they can write.

MLflow tags are mutable by anyone who holds EDIT on the registered model, and EDIT is what the pipeline's
own account needs. So the trail does not live in the model version's tags. Each identity writes its
records into its own experiment, `bayling-approvals/<model>/<identity>`:
- The identity creates that experiment on its first record. The basic-auth app then gives the creator
  MANAGE, and everyone else the server's default permission (READ in infra/mlflow/basic_auth.ini).
  Nobody else can add a record there, so a record can only be written by the identity whose ledger
  holds it, provided the ledger was created by its owner (or an admin): MLflow does not record who created
  an experiment, so a ledger someone else created first and handed over cannot be told apart.
- A record is one run. Its content is logged as params, which MLflow never lets anyone change:
  `record` (canonical JSON), `prev` (the previous record's hash) and `sha256`, the hash of `prev` and
  `record` together. The records of one ledger therefore form a chain.

Reading a ledger verifies, record by record:
- the hash;
- the chain (a missing or reordered record breaks it);
- deleted runs (a deleted run is an erased record);
- that the record names its ledger's owner;
- when the reader may ask the server (the owner, or an admin), that the owner can write the ledger and
  that no one else can.

Whatever fails a check is returned with its problem, never dropped: `tools.approve --history` flags it.
MLflow has no server-side record of who created a run, so the ledger's permissions are the attribution.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bayling.core.errors import PipelineError

LEDGER_ROOT = "bayling-approvals"
GENESIS = "0" * 64  # the `prev` of a ledger's first record
WRITE_LEVELS = {"EDIT", "MANAGE"}


def ledger_name(model_name: str, owner: str) -> str:
    return f"{LEDGER_ROOT}/{model_name}/{owner}"


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def chain_hash(owner: str, prev: str, text: str) -> str:
    """A record's hash covers its ledger's owner, so a copy in another ledger is another record."""
    return hashlib.sha256(f"{owner}\n{prev}\n{text}".encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One record read back from a ledger, with every check it failed (empty: it verified)."""

    owner: str
    run_id: str
    record: dict[str, Any]
    sha256: str
    problems: tuple[str, ...] = ()
    linked: bool = True  # on the ledger's chain from its first record (a new record follows the last of these)

    @property
    def verified(self) -> bool:
        return not self.problems


def _experiments(client: Any, model_name: str) -> list[Any]:
    from mlflow.entities import ViewType

    prefix = f"{LEDGER_ROOT}/{model_name}/"
    found, token = [], None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, filter_string=f"name LIKE '{prefix}%'", page_token=token)
        found += [e for e in page if e.name.startswith(prefix) and "/" not in e.name[len(prefix):]]
        token = page.token
        if not token:
            return found


def _runs(client: Any, experiment_id: str) -> list[Any]:
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        runs += list(page)
        token = page.token
        if not token:
            return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def _read(client: Any, experiment: Any, owner: str, ownership: tuple[str, ...]) -> list[Entry]:
    """The ledger's records in chain order (each `prev` the hash of the one before), then any that are off the
    chain, each with its problems."""
    deleted_experiment = experiment.lifecycle_stage != "active"
    readable: list[tuple[Any, dict[str, Any], str, str, list[str]]] = []
    entries = []
    for run in _runs(client, experiment.experiment_id):
        params = run.data.params or {}
        text, prev, stored = params.get("record"), params.get("prev"), params.get("sha256")
        problems = list(ownership) + (["its whole ledger was deleted"] if deleted_experiment else [])
        if text is None or prev is None or stored is None:
            entries.append(Entry(owner, run.info.run_id, {}, "", (*problems, "a run in the ledger that is not a record")))
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not all(isinstance(record.get(k, ""), str) for k in ("at", "identity", "request", "kind")):
            record = {"unreadable": text[:200]}
            problems.append("its record is not a readable record")
        if chain_hash(owner, prev, text) != stored:
            problems.append("its hash does not match its content")
        if run.info.lifecycle_stage != "active":
            problems.append("it was deleted (an erased record)")
        if record.get("kind") in ("decision", "request") and record.get("identity") != owner:
            problems.append(f"it is a decision by {record.get('identity')!r} but sits in {owner!r}'s ledger")
        elif record.get("recorded_by", owner) != owner:
            problems.append(f"it says {record.get('recorded_by')!r} recorded it but sits in {owner!r}'s ledger")
        readable.append((run, record, stored, prev, problems))
    # follow the chain from its start; start times are the writers' clocks, so they only break ties
    following: dict[str, list[int]] = {}
    for index, (_, _, _, prev, _) in enumerate(readable):
        following.setdefault(prev, []).append(index)
    chain: list[int] = []
    current = GENESIS
    while following.get(current) and len(chain) < len(readable):
        first, *forks = following[current]
        for index in forks:
            readable[index][4].append("a fork: another record of the ledger follows the same record")
        chain.append(first)
        current = readable[first][2]
    off_chain = [i for i in range(len(readable)) if i not in set(chain)]
    for index in chain + off_chain:
        run, record, stored, _, problems = readable[index]
        if index in off_chain and not any(p.startswith("a fork") for p in problems):
            problems.append("the chain is broken before it (a record was removed or reordered)")
        entries.append(Entry(owner, run.info.run_id, record, stored, tuple(problems), linked=index in chain))
    return entries


def ownership_problems(tracking_uri: str, owner: str, experiment_id: str, me: Any = None,
                       users: list[tuple[str, bool]] | None = None) -> tuple[str, ...]:
    """What the server's permissions say against `owner` being the only writer of the ledger; empty when
    they agree, or when this server has no users to ask about. `me` and `users` (for an admin) are asked
    once per reading, not once per ledger."""
    from bayling.approvals.identity import list_usernames, permission_on
    from bayling.register.mlflow_user import current_identity

    if not tracking_uri.startswith(("http://", "https://")):
        return ()
    me = me or current_identity(tracking_uri)
    if not me.authenticated:
        return ()
    if me.name != owner and not me.is_admin:
        return ()  # only the owner or an admin may ask; history says so
    problems = []
    try:
        if permission_on(tracking_uri, owner, "experiment", experiment_id) not in WRITE_LEVELS:
            problems.append(f"{owner} cannot write the ledger named for them (someone else created it)")
        if me.is_admin:
            others = [u for u, admin in (users if users is not None else list_usernames(tracking_uri)) if u != owner and not admin]
            writers = [u for u in others if permission_on(tracking_uri, u, "experiment", experiment_id) in WRITE_LEVELS]
            if writers:
                problems.append(f"others can write {owner}'s ledger too: {', '.join(sorted(writers))}")
    except PipelineError as exc:  # e.g. a ledger named for a user the server does not know
        problems.append(f"its owner cannot be checked: {exc}")
    return tuple(problems)


def read_all(client: Any, model_name: str, tracking_uri: str, owners: set[str] | None = None, check_ownership: bool = True) -> list[Entry]:
    """Every record in the model's ledgers (or those of `owners`), each with its problems, oldest first.
    Without `check_ownership` only the records themselves are checked (a reader waiting for an answer)."""
    from bayling.approvals.identity import list_usernames
    from bayling.register.mlflow_user import current_identity

    me, users = None, None
    if check_ownership and tracking_uri.startswith(("http://", "https://")):
        me = current_identity(tracking_uri)
        users = list_usernames(tracking_uri) if me.is_admin else None
    entries = []
    for experiment in _experiments(client, model_name):
        owner = experiment.name.rsplit("/", 1)[1]
        if owners is not None and owner not in owners:
            continue
        ownership = ownership_problems(tracking_uri, owner, experiment.experiment_id, me, users) if me is not None else ()
        entries += _read(client, experiment, owner, ownership)
    return sorted(entries, key=lambda e: (str(e.record.get("at", "")), e.owner, e.run_id))


def append(client: Any, model_name: str, owner: str, record: dict[str, Any]) -> Entry:
    """Add `record` to `owner`'s ledger (created on first use) with the credentials in use, which must be
    `owner`'s: the server refuses anyone else."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    name = ledger_name(model_name, owner)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                client.create_experiment(name, tags={"bayling.ledger_owner": owner})
            except MlflowException as exc:
                if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
            experiment = client.get_experiment_by_name(name)
        if experiment.lifecycle_stage != "active":
            raise PipelineError(f"the ledger {name} was deleted; an admin must restore it before {owner} can record decisions")
        chained = [e for e in _read(client, experiment, owner, ()) if e.linked]
        prev = chained[-1].sha256 if chained else GENESIS
        text = canonical(record)
        sha = chain_hash(owner, prev, text)
        run = client.create_run(experiment.experiment_id, run_name=f"{record.get('kind', 'record')}-v{record.get('version', '')}")
        client.log_batch(run.info.run_id, params=[Param("record", text), Param("prev", prev), Param("sha256", sha)])
        client.set_terminated(run.info.run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            raise PipelineError(f"MLflow refused to write {owner}'s approval ledger {name}: permission denied (only {owner} may "
                                "write it; if someone else created it, an admin must delete it)") from None
        raise PipelineError(f"MLflow failed while writing the approval ledger {name}: {exc.message}") from None
    return Entry(owner, run.info.run_id, record, sha)


def find(entries: list[Entry], sha256: str, owner: str | None = None) -> Entry | None:
    return next((e for e in entries if e.sha256 == sha256 and owner in (None, e.owner)), None)
