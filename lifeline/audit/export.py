"""One case's whole history across the five services, as a bundle a person can read and a
machine can verify (`lifeline audit export CASE_ID --out DIR`, `lifeline audit check DIR`).

Which events belong to a case (each service's log is read from its own event store):

1. every event that names the case in its `case_id` field (cases, verifications, referrals,
   entitlements, payments, needs, notices, deadlines, person-index entries, fund allocations,
   advances from a reserve fund...);
2. every other event of an aggregate created for the case, i.e. whose first event names it (a
   payment's `Settled`, a need's `AllocationRecorded`, a deadline's `Cleared`, a county filing's
   `Overdue`). An aggregate not created for one case (a fund, a reserve fund, a person in the
   person index, a payment run, a bank batch) gives only its events that name the case.

The bundle (`DIR`):

    README.txt              what is here and how to check it
    case.json               the case id, when and by what it was exported, counts per service
    timeline.txt            every event of every service, one line each, in recorded order
    events/<service>.jsonl  the service's events of the case, one JSON object a line, in the
                            order they were recorded (then log position)
    readmodels/<service>.json  the service's read-model documents of the case as they stand
    notices/<notice_id>.json   each notice (notify's document) and its letter
    notices/<notice_id>.pdf
    manifest.json           SHA-256 of every other file

Each event line: service, position (in that service's log), aggregate (type, id, version),
event (its class), public_event / cloudevent_id (when it was published: the id other
services' events name as their causation), recorded_at (the stored timestamp, Asia/Shanghai),
happened_at and happened_field (the event's own business moment, e.g. `accepted_at`; null
when it has none: then it happened when recorded), who (user_id, role, office), why (the
reason a person gave), causation_id, correlation_id, and data (the event's fields).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import hashlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from lifeline.rules.periods import SHANGHAI
from lifeline.settings import SERVICES, Settings

FORMAT = "lifeline-audit-bundle/1"
MANIFEST = "manifest.json"
_ENVELOPE = ("originator_id", "originator_version", "originator_topic", "timestamp", "meta")
# Moments an event names that are not when it happened (a deadline's, a notice period's end).
_NOT_HAPPENED = ("due_at", "warn_at", "ends_at")
_BATCH = 500


# --- events as JSON ------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    """A JSON value for anything an event holds (value objects, dates, UUIDs, decimals, sets)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False))
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "__dict__"):
        return {k: plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def event_fields(event: Any) -> dict[str, Any]:
    """The event's own fields (not the store's envelope), in declaration order."""
    return {k: v for k, v in vars(event).items() if k not in _ENVELOPE and not k.startswith("_")}


def happened(event: Any) -> tuple[str | None, str | None]:
    """(field, value) of the event's business moment: its first `*_at` field that is not a
    deadline's or a period's end, else its first `*_on` date, else the moment the consumed event
    that made it was handled (`meta.at`); (None, None) when it has none."""
    fields = event_fields(event)
    for name, value in fields.items():
        if name.endswith("_at") and name not in _NOT_HAPPENED and isinstance(value, str) and value:
            return name, value
    for name, value in fields.items():
        if name.endswith("_on") and isinstance(value, str) and value:
            return name, value
    handled = (getattr(event, "meta", None) or {}).get("at")
    return ("meta.at", handled) if handled else (None, None)


def event_record(service: str, position: int | None, event: Any, outbound: Any = None) -> dict[str, Any]:
    """One event as the bundle shows it (see the module's docstring)."""
    from lifeline.messaging.outbox import _event_uuid

    meta = dict(getattr(event, "meta", None) or {})
    out = outbound(event) if outbound is not None else None
    field, moment = happened(event)
    cls = type(event)
    return {
        "service": service,
        "position": position,
        "aggregate": {"type": cls.__qualname__.split(".")[0], "id": str(event.originator_id),
                      "version": event.originator_version},
        "event": cls.__qualname__,
        "public_event": out.name if out is not None else None,
        "cloudevent_id": str(_event_uuid(service, position)) if out is not None and position else None,
        "recorded_at": event.timestamp.astimezone(SHANGHAI).isoformat(),
        "happened_at": moment,
        "happened_field": field,
        "who": {"user_id": meta.get("user_id"), "role": meta.get("role"), "office": meta.get("org_code") or None},
        "why": meta.get("reason") or None,
        "causation_id": meta.get("causation_id") or None,
        "correlation_id": meta.get("correlation_id") or None,
        "data": plain(event_fields(event)),
    }


# --- which events belong to the case ------------------------------------------------------------
def _names_case(event: Any) -> str | None:
    value = getattr(event, "case_id", None)
    return value if isinstance(value, str) and value else None


def notifications(app: Any, after: int = 0) -> Iterator[Any]:
    """The service's whole log after `after`, in order, a batch per query."""
    while True:
        batch = app.recorder.select_notifications(after + 1, _BATCH)
        yield from batch
        if len(batch) < _BATCH:
            return
        after = batch[-1].id


def case_events(app: Any, case_id: str, progress: Callable[[int], None] | None = None) -> list[tuple[int, Any]]:
    """(position, domain event) of every event of the service's log that belongs to the case
    (the rule in the module's docstring), in log order. Reads the log twice: once to find the
    aggregates that name the case, once (decoding only theirs) to take their events."""
    mine: set[uuid.UUID] = set()      # aggregates with an event naming the case
    created: set[uuid.UUID] = set()   # of them, those whose first event names it
    read = 0
    for n in notifications(app):
        read += 1
        if progress is not None and read % 1000 == 0:
            progress(read)
        if _names_case(app.mapper.to_domain_event(n)) == case_id:
            mine.add(n.originator_id)
            if n.originator_version == 1:
                created.add(n.originator_id)
    chosen: list[tuple[int, Any]] = []
    if mine:
        for n in notifications(app):
            if n.originator_id in mine:
                event = app.mapper.to_domain_event(n)
                if n.originator_id in created or _names_case(event) == case_id:
                    chosen.append((n.id, event))
    if progress is not None:
        progress(read)
    return sorted(chosen, key=lambda pe: pe[0])


def case_documents(side: Any, case_id: str) -> list[dict[str, Any]]:
    """The service's read-model documents of the case: keyed by it, referring to it, or naming
    it as their case_id."""
    with side.transaction() as tx:
        rows = tx.mentioning(case_id)
    return [{"kind": kind, "key": key, "ref": ref, "doc": doc} for kind, key, ref, doc in rows]


# --- the bundle -----------------------------------------------------------------------------------
def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2) + "\n").encode("utf-8")


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode("utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _timeline_line(r: dict[str, Any]) -> str:
    who = r["who"]
    by = f"{who['user_id']} ({who['role']}{', ' + who['office'] if who['office'] else ''})"
    public = f" [{r['public_event']}]" if r["public_event"] else ""
    line = f"{r['recorded_at']}  {r['service']:<12} #{r['position']:<7} {r['event']}{public}  by {by}"
    if r["happened_at"]:
        line += f"  {r['happened_field']}={r['happened_at']}"
    if r["why"]:
        line += f"  why: {r['why']}"
    return line


README = """Lifeline audit bundle of case {case_id}
{underline}

Exported {generated_at} by `lifeline audit export` from the five services' event stores.
It holds personal data of the household: keep it as the case file itself is kept.

What is here
  case.json                  the case id, when it was exported, how many events per service
  timeline.txt               every event below, one line each, in the order recorded
  events/<service>.jsonl     each service's events of the case, one JSON object a line,
                             in the order recorded (then by position in that service's log)
  readmodels/<service>.json  each service's read-model documents of the case as they stood
  notices/<id>.json, .pdf    each written notice and its letter{pdf_note}
  manifest.json              SHA-256 of every file above

Each event: service, position (in that service's log), aggregate (type, id, version), event,
public_event and cloudevent_id (when it was published to Kafka: the id that other services'
events name as causation_id), recorded_at (when it was stored), happened_at / happened_field
(the event's own business moment, when it names one), who (user_id, role, office), why (the
reason a person gave), causation_id and correlation_id (what caused it, across services), data.

Which events belong to the case
  Every event whose case_id is this case, and every other event of an aggregate created for the
  case, i.e. whose first event names it (a payment's settlement, a need's allocations, a
  deadline's clearing). An aggregate not created for one case (a fund, a payment run, a person
  in the person index) gives only its events that name this case.

Checking it
  lifeline audit check {dir_name}
  verifies every file against manifest.json and names any file changed, missing or added
  (exit status 1 when anything differs). The export printed manifest.json's own SHA-256; kept
  apart from the bundle, it proves the manifest too:
  lifeline audit check {dir_name} --expect <that hash>
"""


@dataclasses.dataclass
class ExportResult:
    case_id: str
    out: Path
    events: dict[str, int]
    documents: dict[str, int]
    notices: int
    pdfs: int
    files: int
    manifest_sha256: str
    note: str = ""


def _letter_pdf() -> Callable[[dict[str, Any]], bytes] | None:
    try:
        from services.notify.letters import letter_pdf
    except ImportError:  # a Lifeline without letters: the notices go without their PDF
        return None
    return letter_pdf


def export_case(settings: Settings, case_id: str, out: Path, *, services: tuple[str, ...] = SERVICES,
                err: TextIO = sys.stderr) -> ExportResult:
    """Write the bundle of `case_id` into `out` (created; must be empty). LookupError when no
    service has an event of the case."""
    import importlib

    from lifeline.audit.progress import Progress
    from lifeline.rules.setup import install_rules
    from lifeline.stores.projection import Projection
    from lifeline.stores.sidestore import SideStore

    install_rules(settings)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: export into a new directory")
    records: dict[str, list[dict[str, Any]]] = {}
    documents: dict[str, list[dict[str, Any]]] = {}
    for name in services:
        spec = importlib.import_module(f"services.{name}.bootstrap").SPEC
        app = spec.application(settings)
        side = SideStore(settings, name)
        try:
            reading = Progress(f"{name}: reading the log", app.recorder.max_notification_id() or 0, out=err)
            events = case_events(app, case_id, reading.update)
            reading.done()
            records[name] = sorted((event_record(name, p, e, app.outbound) for p, e in events),
                                   key=lambda r: (r["recorded_at"], r["position"]))
            print(f"{name}: {len(records[name])} events of case {case_id}", file=err, flush=True)
            # The read models as they stand: projected up to the log's end first, as the service
            # does (and as `lifeline replay` does).
            views = Projection(app, side, spec.project, spec.views_version)
            views.ensure_version()
            views.catch_up()
            documents[name] = case_documents(side, case_id)
        finally:
            app.close()
            side.close()
    if not any(records.values()):
        raise LookupError(f"no service has an event of case {case_id}")

    files: dict[str, bytes] = {}
    for name in services:
        files[f"events/{name}.jsonl"] = _jsonl(records[name])
        files[f"readmodels/{name}.json"] = _json(documents[name])
    everything = sorted((r for rs in records.values() for r in rs), key=lambda r: (r["recorded_at"], r["service"],
                                                                                    r["position"]))
    files["timeline.txt"] = ("\n".join(_timeline_line(r) for r in everything) + "\n").encode("utf-8")
    notices = [d["doc"] for d in documents.get("notify", []) if d["kind"] == "notice"]
    letter_pdf = _letter_pdf()
    pdfs = 0
    for notice in notices:
        files[f"notices/{notice['notice_id']}.json"] = _json(notice)
        if letter_pdf is not None:
            files[f"notices/{notice['notice_id']}.pdf"] = letter_pdf(notice)
            pdfs += 1
    note = "" if letter_pdf is not None or not notices else "letters (PDF) are not available in this Lifeline"
    generated_at = dt.datetime.now(SHANGHAI).isoformat(timespec="seconds")
    files["case.json"] = _json({
        "format": FORMAT, "case_id": case_id, "generated_at": generated_at,
        "services": {name: {"events": len(records[name]), "documents": len(documents[name])} for name in services},
        "notices": len(notices), "letters": pdfs, "note": note or None,
    })
    files["README.txt"] = README.format(
        case_id=case_id, underline="=" * (len(case_id) + 31), generated_at=generated_at, dir_name=out.name,
        pdf_note="" if not note else f" ({note})",
    ).encode("utf-8")

    out.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    manifest = {"format": FORMAT, "case_id": case_id, "algorithm": "sha256",
                "files": {rel: hashlib.sha256(content).hexdigest() for rel, content in sorted(files.items())}}
    manifest_bytes = _json(manifest)
    (out / MANIFEST).write_bytes(manifest_bytes)
    return ExportResult(
        case_id=case_id, out=out, events={n: len(records[n]) for n in services},
        documents={n: len(documents[n]) for n in services}, notices=len(notices), pdfs=pdfs,
        files=len(files) + 1, manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(), note=note,
    )


# --- checking a bundle -----------------------------------------------------------------------------
@dataclasses.dataclass
class CheckResult:
    files: int
    changed: list[str]
    missing: list[str]
    added: list[str]
    manifest_problem: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.added or self.manifest_problem)

    def lines(self) -> list[str]:
        out = []
        if self.manifest_problem:
            out.append(f"manifest: {self.manifest_problem}")
        out += [f"changed: {p}" for p in self.changed]
        out += [f"missing: {p}" for p in self.missing]
        out += [f"added:   {p}" for p in self.added]
        return out


def check_bundle(directory: Path, expect_manifest_sha256: str | None = None) -> CheckResult:
    """Every file of the bundle against its manifest: which were changed, are missing or were
    added; with `expect_manifest_sha256`, the manifest itself against that hash."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        return CheckResult(0, [], [], [], manifest_problem=f"{MANIFEST} is missing: not a bundle, or it was removed")
    problem = None
    if expect_manifest_sha256 and sha256_file(manifest_path) != expect_manifest_sha256.strip().lower():
        problem = f"{MANIFEST} does not have the expected SHA-256: it was changed"
    try:
        manifest = json.loads(manifest_path.read_bytes())
        listed: dict[str, str] = manifest["files"]
        if not isinstance(listed, dict):
            raise TypeError("files is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        return CheckResult(0, [], [], [], manifest_problem=f"{MANIFEST} is unreadable ({exc}): it was changed")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()} - {MANIFEST}
    changed = sorted(rel for rel, digest in listed.items() if rel in present and sha256_file(directory / rel) != digest)
    missing = sorted(set(listed) - present)
    added = sorted(present - set(listed))
    return CheckResult(len(listed), changed, missing, added, manifest_problem=problem)
