"""Group commit (lifeline/stores/groupcommit.py): applications registered at the same moment share
transactions, and each keeps its own outcome: all stored once; people named on several of them at
once are indexed once, the first application submitted and the others held naming it."""

from __future__ import annotations

import threading
from datetime import date

from lifeline.ops.metrics import GROUP_COMMIT_SIZE
from lifeline.domain.clock import FixedClock
from lifeline.rules.ids import make_resident_id
from services.intake.application import IntakeApplication
from services.intake.domain import Case
from services.intake.persons import Person

from . import CLERK, MEMORY_ENV, SEALER, application_body, stored

NOW = "2026-11-25T10:00:00+08:00"


def person(n: int) -> str:
    return make_resident_id("370502", date(1971, 3, 3), n, female=True)


def saves_and_groups() -> tuple[float, float]:
    sample = {s.name: s.value for s in GROUP_COMMIT_SIZE.collect()[0].samples}
    return sample["lifeline_group_commit_saves_sum"], sample["lifeline_group_commit_saves_count"]


def at_once(n: int, work) -> list:
    """`work(i)` on n threads released together; their results (or exceptions) in order."""
    start = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - asserted by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def sqlite_intake(tmp_path) -> IntakeApplication:
    env = {**MEMORY_ENV, "SQLITE_DBNAME": str(tmp_path / "intake.events.sqlite"), "SQLITE_LOCK_TIMEOUT": "30"}
    return IntakeApplication(env, clock=FixedClock(NOW), sealer=SEALER)


def test_concurrent_registrations_share_transactions_and_are_each_stored_once(tmp_path):
    intake = sqlite_intake(tmp_path)
    try:
        saves_before, groups_before = saves_and_groups()
        results = at_once(40, lambda i: intake.register_application(
            application_body([person(100 + 2 * i), person(101 + 2 * i)]), CLERK))
        assert all(status == "submitted" for _, status in results), results
        case_ids = [case_id for case_id, _ in results]
        assert len(set(case_ids)) == 40
        assert sorted(e.case_id for e in stored(intake, Case.Submitted)) == sorted(case_ids)
        assert len(stored(intake, Person.Indexed)) == 80
        saves, groups = saves_and_groups()
        assert saves - saves_before == 40
        assert groups - groups_before < 40  # some saves shared a transaction
    finally:
        intake.close()


def test_one_person_named_by_applications_registered_at_once_is_indexed_once_and_holds_the_rest(tmp_path):
    intake = sqlite_intake(tmp_path)
    try:
        shared = person(400)
        results = at_once(6, lambda i: intake.register_application(
            application_body([person(401 + i), shared]), CLERK))
        statuses = [status for _, status in results]
        assert statuses.count("submitted") == 1, results
        assert statuses.count("suspected_duplicate") == 5
        (first,) = [case_id for case_id, status in results if status == "submitted"]
        for case_id, status in results:
            if status == "suspected_duplicate":
                assert first in intake.get_case(case_id).duplicate_of
        assert len(stored(intake, Case.Submitted)) == 6
        assert len([e for e in stored(intake, Person.Indexed)]) == 7  # the shared one once
    finally:
        intake.close()


def test_a_repeated_request_answers_the_stored_case(tmp_path):
    intake = sqlite_intake(tmp_path)
    try:
        body = application_body([person(450), person(451)])
        results = at_once(6, lambda i: intake.register_application(dict(body), CLERK, "C-SAME-KEY"))
        assert results == [("C-SAME-KEY", "submitted")] * 6
        assert len(stored(intake, Case.Submitted)) == 1
    finally:
        intake.close()


def test_a_save_answers_its_own_recordings_as_the_library_does(tmp_path):
    from lifeline.stores import chain

    intake = sqlite_intake(tmp_path)
    try:
        results = at_once(8, lambda i: intake.register_application(
            application_body([person(460 + 2 * i), person(461 + 2 * i)]), CLERK))
        assert len(results) == 8
        sealed = chain.seal(intake, "intake")  # saves the seal and reads back its recording
        assert sealed is not None and sealed.originator_version >= 1
    finally:
        intake.close()
