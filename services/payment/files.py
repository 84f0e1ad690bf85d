"""Bank files: a batch's pain.001 written where the submitter and `GET
/v1/bank-batches/{batch_id}/pain001` find it.

The only place an account number is unsealed. A file is a pure function of its batch
(the payments, the county's paying account, the moment the batch was assembled), so
one lost in a crash is written again, byte for byte. A big run writes its files in a
separate process (`FileWriter(processes=1)`), so building XML runs on the second core
while the run commits the next batch.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

from lifeline.iso20022.pain001 import BankBatch as Pain001Batch, CreditTransfer, build_pain001
from lifeline.stores.sealing import Sealer
from services.payment.channels import BankChannel, PayingAccount

# What the household's statement shows beside the amount (附言).
REMITTANCE = {
    "dibao_fund": "最低生活保障金",
    "tekun_fund": "特困人员救助供养金",
    "temporary_relief_budget": "临时救助金",
    "township_reserve_fund": "临时救助金（备用金）",
    "service_purchase": "社会救助购买服务费",  # a provider paid for a confirmed delivery (issue 17)
}


class Transfer(NamedTuple):
    """One payment as the file needs it: the number still sealed. (A tuple: a run makes a
    million, and a frozen dataclass costs several times more to build.)"""

    payment_id: str
    amount_fen: int
    account_name: str
    number_sealed: str
    period: str
    fund_source: str


@dataclass(frozen=True)
class FileJob:
    batch_id: str
    path: str
    created_at: str  # ISO 8601, with offset: when the batch was assembled
    requested_execution_date: str
    debtor_name: str
    debtor_account: str
    bank_code: str
    bank_code_kind: str  # BIC or CNAPS
    single_pmtinf: bool
    transfers: tuple[Transfer, ...]

    @classmethod
    def of(cls, batch_id: str, path: Path, created_at: str, requested_execution_date: str,
           channel: BankChannel, account: PayingAccount, transfers: tuple[Transfer, ...]) -> "FileJob":
        return cls(batch_id=batch_id, path=str(path), created_at=created_at,
                   requested_execution_date=requested_execution_date, debtor_name=account.account_name,
                   debtor_account=account.account_number, bank_code=channel.bank_code,
                   bank_code_kind=channel.bank_code_kind, single_pmtinf=channel.single_pmtinf,
                   transfers=transfers)


@dataclass(frozen=True)
class WrittenFile:
    batch_id: str
    path: str
    sha256: str
    size: int


def pain001_of(job: FileJob, sealer: Sealer) -> bytes:
    """The file's bytes (valid against the XSD, or Iso20022Error)."""
    transfers = tuple(
        CreditTransfer(end_to_end_id=t.payment_id, amount_fen=t.amount_fen, creditor_name=t.account_name,
                       creditor_account=sealer.unseal(t.number_sealed),
                       remittance=f"{t.period} {REMITTANCE.get(t.fund_source, '社会救助金')}")
        for t in job.transfers
    )
    bank = {"debtor_agent_bic": job.bank_code} if job.bank_code_kind == "BIC" else {
        "debtor_agent_bank_code": job.bank_code}
    return build_pain001(Pain001Batch(
        batch_id=job.batch_id, created_at=datetime.fromisoformat(job.created_at),
        initiating_party=job.debtor_name, debtor_name=job.debtor_name, debtor_account=job.debtor_account,
        requested_execution_date=date.fromisoformat(job.requested_execution_date), transfers=transfers,
        single_pmtinf=job.single_pmtinf, **bank,
    ))


def write_file(job: FileJob, sealer: Sealer) -> WrittenFile:
    content = pain001_of(job, sealer)
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole or not at all: the submitter never sends half a file.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(content)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)  # account numbers in clear
    os.replace(tmp, path)
    return WrittenFile(job.batch_id, str(path), hashlib.sha256(content).hexdigest(), len(content))


_worker_sealer: Sealer | None = None


def _init_worker(secret: str) -> None:
    global _worker_sealer
    _worker_sealer = Sealer(secret)


def _write_in_worker(job: FileJob) -> WrittenFile:
    assert _worker_sealer is not None
    return write_file(job, _worker_sealer)


class FileWriter:
    """Writes batches' files in the background; `processes=0` writes in a thread of this
    process (small runs, tests), `processes>=1` in that many worker processes."""

    def __init__(self, sealer: Sealer, processes: int = 0):
        self.sealer = sealer
        self.processes = processes
        self._executor: Executor | None = None

    def _pool(self) -> Executor:
        if self._executor is None:
            if self.processes > 0:
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=get_context("spawn"), initializer=_init_worker,
                    initargs=(self.sealer.secret,))
            else:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="pain001")
        return self._executor

    def submit(self, job: FileJob) -> Future[WrittenFile]:
        if self.processes > 0:
            return self._pool().submit(_write_in_worker, job)
        return self._pool().submit(write_file, job, self.sealer)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
