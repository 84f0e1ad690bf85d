"""The six written notices as printable A4 letters (PDF): what a household receives by post.

`letter_pdf(notice)` lays a notice out as a 公文-style letter (the issuing office, the case
number, the legal name as title, the addressee as the notice names them, the decision, its
reasons and legal basis, the remedies where the notice decides against the household, the date
and a seal placeholder) from HTML templates (services/notify/templates: base.html and one block
per kind) and prints it to PDF with Debian's headless Chromium. CJK text is set in Debian's
fonts-noto-cjk ("Noto Serif CJK SC"); nothing is fetched at run time (the page's CSP forbids
it). The notice is the read-model document or the NoticeIssued data: `notice_id`, `case_id`,
`kind`, `legal_name`, `recipient_masked`, `body`, `issued_at` and, when known, `issuing_office`
(the deciding office) or else `region_code`.

The reasons, the materials list and the public-notice figures are laid out from the notice's
body text (the notice keeps no more than that); whatever the layout does not recognise is
printed as it stands, so nothing the body says is lost.

Rendering: one Chromium per process, started on the first letter, kept warm and driven over
`--remote-debugging-pipe` (the DevTools protocol on two pipes: no port, nothing to connect to
from outside), one letter at a time, restarted when it dies or hangs, closed after a while
without letters. `python -m services.notify.letters --samples docs/notices` writes a PDF and a
PNG of each kind.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import collections
import fcntl
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from lifeline.http.app import READ_ERRORS
from lifeline.http.auth import CASE_READERS, Principal, ensure_region
from lifeline.http.problems import Problem
from lifeline.rules.periods import SHANGHAI
from lifeline.rules.regions import KNOWN_COUNTIES, PROVINCES, region_register
from lifeline.runtime.service import ServiceRuntime
from services.notify.domain import LEGAL_NAMES, REMEDY

TEMPLATES = Path(__file__).with_name("templates")

# The notices that decide against the household: they name the remedies (行政复议法, 行政诉讼法).
AGAINST = frozenset({"non_acceptance", "refusal", "adjustment"})

# The legal basis each letter states. Every notice rests on the State Council's 社会救助暂行办法
# (国务院令第649号, seeds 003 and 004); the body of an adjustment names its article itself.
BASIS_ACT = "《社会救助暂行办法》（国务院令第649号）"
BASIS = {
    # seed 002: 对材料齐全的申请人员，应及时受理
    "acceptance": "对材料齐全的申请，应当及时受理",
    # seed 002: 县申请最低生活保障不予受理告知书
    "non_acceptance": "不符合受理条件的申请，书面告知不予受理及其理由",
    # seed 002: 对材料不齐全的申请人员，要一次性告知需补正材料；能够通过部门信息共享获取的
    # 证明材料，不再要求申请人重复提交
    "materials": "材料不齐全的，一次性告知需补正的全部材料；能够通过部门信息共享获取的材料不再要求提交",
    # seed 002: 不符合条件、不予同意的，应当在作出决定3个工作日内，出具不予批准决定书，书面向
    # 申请人说明理由
    "refusal": "不符合条件、不予批准的，书面向申请人说明理由",
    # seed 002: 主要公示申请人姓名、家庭保障人数、保障金额等，不得公开无关信息；同时公布举报电话
    "public_notice": "审核确认后予以公示，公示申请人姓名、家庭保障人数、保障金额，并公布举报电话",
    # seed 002: 作出调减、停发的决定，应当符合法定事由和规定程序，并出具调整（停发）告知书
    "adjustment": "调减、停发救助金应当符合法定事由和规定程序，并书面告知",
}

_REMEDY_SENTENCE = re.compile(r"如对本决定(?:不服|有异议)，[^。]*?行政复议[^。]*。")
_BASIS_SENTENCE = re.compile(r"依据(《[^》]+》[^。，]*)。")
_REASON = re.compile(r"理由：(.*)。", re.S)
_MATERIALS = re.compile(r"((?:请一次性补齐|您补正后仍缺)以下材料(?:（[^）]*）)?)：(.+?)。")
_EXPLANATION = re.compile(r"说明：(.+?)。(?=其他|补齐后|$)")
_ITEM_NUMBER = re.compile(r"^\s*\d+[.、．]\s*")
_SLIP = re.compile(
    r"申请人(?P<applicant>[^，]+)，保障人数(?P<members>\d+)人，拟给予(?P<assistance>[^，]+)，"
    r"(?P<amount>[^。]+)。公示期：(?P<notice_from>\S+?)至(?P<notice_until>[^。]+)。(?P<rest>.*)", re.S)
_HOTLINE = re.compile(r"举报电话([0-9０-９\-－ ]+)")
_DIVISION_FILLERS = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}
_MUNICIPALITIES = {"11", "12", "31", "50"}  # 直辖市: the province's name is part of the county's


class LetterError(RuntimeError):
    """A letter could not be rendered (no Chromium, Chromium failed or hung): 503 on the route."""


# --- what the letter says -------------------------------------------------------------------------
def county_name(code: str) -> str | None:
    """The display name of a code's county: the seeds' counties by name, else province,
    prefecture and county as the GB/T 2260 register names them; None when it knows none."""
    six = code[:6]
    if six in KNOWN_COUNTIES:
        return KNOWN_COUNTIES[six]
    try:
        register = region_register()
    except Exception:  # noqa: BLE001 - a register that cannot be read names no county
        return None
    names: list[str] = []
    for part in (six[:2] + "0000", six[:4] + "00", six):
        division = register.get(part)
        if division is not None and division.name not in _DIVISION_FILLERS and division.name not in names:
            names.append(division.name)
    return "".join(names) if register.get(six) is not None else None


def issuing_office(region_code: str | None) -> dict[str, str]:
    """Who issues a notice of `region_code`: the township's people's government (审核确认 lies
    with the township) for a village or township, the county's civil-affairs bureau for a county.
    Township names are in no register: a township is named by its code under its county."""
    code = region_code if region_code and region_code.isdigit() else ""
    county = county_name(code) if len(code) in (6, 9, 12) else None
    province = PROVINCES.get(code[:2], "")
    if county and province and code[:2] not in _MUNICIPALITIES and county != province:
        county = county.removeprefix(province)  # 东营市东营区人民政府, as it calls itself
    if len(code) in (9, 12):
        township = code[:9]
        return {"name": f"{county or code[:6]}（{township}）乡镇人民政府", "code": township,
                "county": county or "", "reviewer": f"{county}人民政府" if county else ""}
    if len(code) == 6:
        return {"name": f"{county or code}民政局", "code": code, "county": county or "",
                "reviewer": f"{county}人民政府" if county else ""}
    return {"name": "县级人民政府民政部门", "code": "", "county": "", "reviewer": ""}


def chinese_date(moment: str) -> str:
    day = datetime.fromisoformat(moment).astimezone(SHANGHAI)
    return f"{day.year}年{day.month}月{day.day}日"


def _sentences(text: str) -> list[str]:
    """Text split after each full stop, blanks dropped."""
    return [s for s in re.split(r"(?<=。)", text) if s.strip()]


def letter_context(notice: dict[str, Any]) -> dict[str, Any]:
    """What the templates print, laid out from the notice (pure: no Chromium)."""
    kind = notice["kind"]
    if kind not in LEGAL_NAMES:
        raise ValueError(f"no letter for notice kind {kind!r}")
    body = notice["body"].strip()
    addressee = notice.get("recipient_masked") or "申请人"
    text = body[len(addressee) + 1:] if body.startswith(addressee + "：") else body

    remedy = kind in AGAINST or bool(_REMEDY_SENTENCE.search(text)) or REMEDY in text
    text = _REMEDY_SENTENCE.sub("", text.replace(REMEDY, ""))
    body_basis = _BASIS_SENTENCE.search(text)
    if body_basis:
        text = text[:body_basis.start()] + text[body_basis.end():]
    # The act as the seeds cite it, with the article the body names (调整: 第十三条).
    article = re.sub(r"^《社会救助暂行办法》", "", body_basis.group(1)) if body_basis else ""
    if body_basis and not body_basis.group(1).startswith("《社会救助暂行办法》"):
        basis = body_basis.group(1)
    else:
        basis = BASIS_ACT + article

    context: dict[str, Any] = {
        "kind": kind, "legal_name": notice["legal_name"], "notice_id": notice["notice_id"],
        "case_id": notice["case_id"], "addressee": addressee,
        "office": issuing_office(notice.get("issuing_office") or notice.get("region_code")), "date": chinese_date(notice["issued_at"]),
        "basis": basis, "basis_rule": BASIS[kind], "remedy": remedy, "remedy_text": REMEDY,
        "decision": [], "reasons": None, "materials": [], "materials_lead": "", "explanation": None,
        "closing": [], "slip": None,
    }

    if kind == "materials":
        found = _MATERIALS.search(text)
        if found:
            context["decision"] = _sentences(text[:found.start()])
            context["materials_lead"] = found.group(1)
            context["materials"] = [_ITEM_NUMBER.sub("", item).strip()
                                    for item in found.group(2).split("；") if item.strip()]
            rest = text[found.end():]
            explained = _EXPLANATION.search(rest)
            if explained:
                context["explanation"] = explained.group(1)
                rest = rest[:explained.start()] + rest[explained.end():]
            context["closing"] = _sentences(rest)
            return context
    elif kind == "public_notice":
        found = _SLIP.search(text)
        if found:
            hotline = _HOTLINE.search(found.group("rest"))
            context["slip"] = {**found.groupdict(), "hotline": hotline.group(1).strip() if hotline else ""}
            context["decision"] = _sentences(text[:found.start()].removeprefix("审核确认公示："))
            context["closing"] = _sentences(found.group("rest"))
            return context
    else:
        found = _REASON.search(text)
        if found:
            context["decision"] = _sentences(text[:found.start()])
            context["reasons"] = found.group(1).strip()
            context["closing"] = _sentences(text[found.end():])
            return context
    context["decision"] = _sentences(text)  # a body the layout does not know: as it stands
    return context


_ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _ids(text: str, case_id: str) -> Markup:
    """`text` escaped, the case number kept on one line (it breaks at its hyphen otherwise)."""
    return escape(text).replace(escape(case_id), Markup('<span class="id">%s</span>') % case_id)


_ENV.filters["ids"] = _ids


def letter_html(notice: dict[str, Any]) -> str:
    """The letter as a self-contained HTML page (its kind's template on base.html)."""
    context = letter_context(notice)
    return _ENV.get_template(f"{context['kind']}.html").render(**context)


# --- Chromium over the DevTools pipe ------------------------------------------------------------
# The child gets the pipe ends on fds 3 (commands in) and 4 (answers out), as
# --remote-debugging-pipe expects; a tiny Python trampoline puts them there (no preexec_fn,
# which is unsafe in a process with threads).
_TRAMPOLINE = ("import os,sys; os.dup2(int(sys.argv[1]),3); os.dup2(int(sys.argv[2]),4); "
               "os.execvp(sys.argv[3], sys.argv[3:])")
_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--mute-audio",
    "--hide-scrollbars", "--font-render-hinting=none", "--remote-debugging-pipe",
    # Fewer processes (one renderer, no zygote, no software GPU): ~160 MB instead of ~250 MB.
    "--renderer-process-limit=1", "--no-zygote", "--disable-software-rasterizer",
)
# A4, margins from the page's own @page rule.
_PRINT = {"paperWidth": 8.27, "paperHeight": 11.69, "preferCSSPageSize": True, "printBackground": True,
          "displayHeaderFooter": False}


def _high_fd(fd: int) -> int:
    """`fd` moved to 10 or above (close-on-exec), clear of the 3 and 4 the child needs."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Chromium:
    """One headless Chromium, started when first needed and reused for every letter; one
    letter at a time. A browser that dies, hangs past `timeout` or answers nonsense is stopped
    and the letter tried once more on a fresh one; after `idle_seconds` without letters it is
    closed (the next letter starts it again). It exits by itself when this process dies (its
    command pipe closes)."""

    def __init__(self, binary: str = "chromium", *, timeout: float = 30.0, idle_seconds: float = 300.0):
        self.binary = binary
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._pid = os.getpid()
        self._profile: str | None = None
        self._to: int | None = None
        self._from: int | None = None
        self._buffer = b""
        self._next_id = 0
        self._session = ""
        self._frame = ""
        self._last_used = 0.0
        self._idle: threading.Timer | None = None
        self.starts = 0  # how many browsers it started (tests, the samples tool)

    # -- public --
    def pdf(self, html: str) -> bytes:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's browser is not ours
                self._forget()
            for attempt in (1, 2):
                try:
                    if self._proc is None:
                        self._start()
                    data = self._print(html)
                    break
                except (OSError, EOFError, TimeoutError, ValueError, KeyError, LetterError) as exc:
                    self._stop()
                    if attempt == 2:
                        raise LetterError(f"Chromium could not print the letter: {exc}") from exc
            self._last_used = time.monotonic()
            self._arm_idle()
            return data

    def close(self) -> None:
        with self._lock:
            self._stop()

    # -- the browser --
    def _start(self) -> None:
        binary = shutil.which(self.binary)
        if binary is None:
            raise LetterError(f"no {self.binary!r} found: install Debian's chromium and fonts-noto-cjk "
                              "(apt-get install chromium fonts-noto-cjk) or set LIFELINE_CHROMIUM")
        self._profile = tempfile.mkdtemp(prefix="lifeline-chromium-")
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        child_in, to_child, from_child, child_out = map(_high_fd, (child_in, to_child, from_child, child_out))
        log = open(os.path.join(self._profile, "chromium.log"), "wb")  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(child_in), str(child_out), binary,
                 *_FLAGS, f"--user-data-dir={self._profile}", "about:blank"],
                pass_fds=(child_in, child_out), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(child_in)
            os.close(child_out)
            log.close()
        self._to, self._from = to_child, from_child
        self._buffer, self._pid = b"", os.getpid()
        self.starts += 1
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self._frame = self._call("Page.getFrameTree", session=True)["frameTree"]["frame"]["id"]

    def _print(self, html: str) -> bytes:
        self._call("Page.setDocumentContent", {"frameId": self._frame, "html": html}, session=True)
        self._call("Runtime.evaluate", {"expression": "document.fonts.ready.then(() => true)",
                                        "awaitPromise": True}, session=True)
        data = base64.b64decode(self._call("Page.printToPDF", _PRINT, session=True)["data"])
        if not data.startswith(b"%PDF-"):
            raise LetterError("Chromium answered something that is not a PDF")
        return data

    def _call(self, method: str, params: dict | None = None, *, session: bool = False) -> dict:
        assert self._to is not None and self._from is not None
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        payload = json.dumps(message, ensure_ascii=False).encode() + b"\0"
        while payload:
            payload = payload[os.write(self._to, payload):]
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._from], [], [], left)[0]:
                    raise TimeoutError(f"{method}: no answer from Chromium within {self.timeout:g} s"
                                       f"{self._log_tail()}")
                chunk = os.read(self._from, 1 << 20)
                if not chunk:
                    raise EOFError(f"Chromium exited{self._log_tail()}")
                self._buffer += chunk
            line, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(line)
            if answer.get("id") != self._next_id:
                continue  # an event, or the answer to a call given up on
            if "error" in answer:
                raise LetterError(f"{method}: {answer['error'].get('message', answer['error'])}")
            return answer["result"]

    def _log_tail(self) -> str:
        try:
            lines = Path(self._profile or "", "chromium.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        useful = [line for line in lines if "dbus" not in line.lower() and "unexpected operator" not in line]
        return (": " + " | ".join(useful[-3:])) if useful else ""

    def _stop(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        for fd in (self._to, self._from):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to = self._from = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)  # its command pipe closed: it exits by itself
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self._proc.pid, 9)  # its own session: the renderers go with it
                except OSError:
                    self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def _forget(self) -> None:
        self._proc, self._to, self._from, self._profile, self._idle = None, None, None, None, None
        self._pid = os.getpid()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = threading.Timer(self.idle_seconds, self._close_if_idle)
        self._idle.daemon = True
        self._idle.start()

    def _close_if_idle(self) -> None:
        if not self._lock.acquire(blocking=False):
            return  # printing: it was used just now
        try:
            if self._proc is not None and time.monotonic() - self._last_used >= self.idle_seconds * 0.99:
                self._idle = None
                self._stop()
        finally:
            self._lock.release()


_renderer = Chromium()
atexit.register(lambda: _renderer.close())  # whichever configure() left
_cache: collections.OrderedDict[str, bytes] = collections.OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 64


def configure(chromium: str) -> None:
    """The Chromium this process prints with (Settings.chromium, LIFELINE_CHROMIUM)."""
    global _renderer
    if chromium != _renderer.binary:
        _renderer.close()
        _renderer = Chromium(chromium)


def letter_pdf(notice: dict[str, Any]) -> bytes:
    """The notice as a PDF letter (A4). Raises LetterError when Chromium cannot print it, and
    ValueError for a kind with no letter. The same notice again is answered from a small cache."""
    html = letter_html(notice)
    key = hashlib.sha256(html.encode()).hexdigest()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    pdf = _renderer.pdf(html)
    with _cache_lock:
        _cache[key] = pdf
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return pdf


# --- the route -------------------------------------------------------------------------------------
def add_letter_route(api: APIRouter, runtime: ServiceRuntime) -> None:
    """`GET /v1/notices/{notice_id}.pdf` on notify's router: the letter of a notice within the
    caller's region, for the case readers (auditor included)."""
    @api.get(
        "/notices/{notice_id}.pdf", tags=["notices"], response_class=Response,
        responses={200: {"description": "The notice as a printable A4 letter",
                         "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
                   **READ_ERRORS},
    )
    async def notice_letter(
        notice_id: Annotated[str, PathParam(min_length=1, max_length=64, examples=["NACC-0123456789ABCDEF"])],
        principal: Principal = runtime.auth.require(*CASE_READERS),
    ):
        """The notice as the household receives it by post: a PDF letter with its legal name,
        the case number, the decision, reasons, legal basis and remedies, date and seal."""
        views = await runtime.views()
        with views.transaction() as tx:
            doc = tx.get("notice", notice_id)
        if doc is None:
            raise Problem(404, "Notice not found", f"no notice {notice_id}", slug="notice-not-found")
        ensure_region(principal, doc["region_code"])
        try:
            pdf = await asyncio.to_thread(letter_pdf, doc)
        except LetterError as exc:
            raise Problem(503, "Letter not available", str(exc), slug="letter-unavailable") from None
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{notice_id}.pdf"'})


# --- sample letters (docs/notices) -----------------------------------------------------------------
def sample_notices() -> list[dict[str, Any]]:
    """One notice of each kind, worded by notify's own texts, for the documentation."""
    from services.notify import domain

    case_id, name, village, issued = "C-3F2A9C41D07B5E68A1C2", "王*明", "370502101001", "2026-11-30T09:30:00+08:00"
    bodies = {
        "acceptance": domain.acceptance_text(name, case_id, "dibao"),
        "non_acceptance": domain.non_acceptance_text(name, case_id, "dibao", "申请人户籍及经常居住地均不在本辖区"),
        "materials": domain.materials_text(name, case_id, "dibao", ["resident_id", "authorisation"], False,
                                           "授权书未经全部家庭成员签字"),
        "refusal": domain.refusal_text(name, case_id, "家庭人均收入高于当地最低生活保障标准"),
        "public_notice": domain.public_notice_text(name, 2, "dibao", 206000, None, "2026-11-30", "2026-12-06",
                                                   "0546-12345"),
        "adjustment": domain.change_text(name, case_id, "BenefitAdjusted", "2027-01", "复核：家庭人均收入增加",
                                         52000, 98000),
    }
    return [{"notice_id": f"N{kind[:3].upper()}-{hashlib.sha256(kind.encode()).hexdigest()[:16].upper()}",
             "case_id": case_id, "kind": kind, "legal_name": LEGAL_NAMES[kind], "channel": "letter",
             "recipient_masked": name, "region_code": village, "body": body, "cause_event_id": "sample",
             "issued_at": issued, "delivery": "pending"} for kind, body in bodies.items()]


def write_samples(directory: Path, resolution: int = 80) -> list[Path]:
    """<kind>.png (pdftoppm, first page) of each sample notice in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for notice in sample_notices():
            started = time.monotonic()
            pdf = Path(tmp, f"{notice['kind']}.pdf")
            pdf.write_bytes(letter_pdf(notice))
            took = time.monotonic() - started
            out = directory / notice["kind"]
            subprocess.run(["pdftoppm", "-png", "-r", str(resolution), "-singlefile", str(pdf), str(out)],
                           check=True)
            written.append(out.with_suffix(".png"))
            print(f"{out.with_suffix('.png')}  ({took * 1000:.0f} ms to render)")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.notify.letters", description=__doc__.split("\n")[0])
    parser.add_argument("--samples", metavar="DIR", required=True, help="write <kind>.png of each kind here")
    parser.add_argument("--resolution", type=int, default=80, help="PNG resolution (dpi)")
    parser.add_argument("--chromium", default="chromium", help="the Chromium to print with")
    args = parser.parse_args(argv)
    configure(args.chromium)
    try:
        write_samples(Path(args.samples), args.resolution)
    finally:
        _renderer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
