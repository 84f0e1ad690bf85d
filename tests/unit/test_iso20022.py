"""ISO 20022 messages with the banks: pain.001.001.09, pain.002.001.12, camt.053.001.08."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest
from lxml import etree

from lifeline.iso20022 import (
    Balance,
    BankBatch,
    CreditTransfer,
    Iso20022Error,
    Statement,
    StatementEntry,
    StatusReport,
    TransactionStatus,
    build_camt053,
    build_pain001,
    build_pain002,
    decimal_to_fen,
    fen_to_decimal,
    parse_camt053,
    parse_pain002,
    schema,
)

CST = timezone(timedelta(hours=8))
CREATED = datetime(2026, 12, 1, 9, 30, tzinfo=CST)
DEBTOR_ACCOUNT = "1102020109000012345"
CREDITOR_ACCOUNT = "6217000012345678901"
NS001 = {"d": "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"}


def transfer(i: int = 1, amount: int = 49_000, **kw) -> CreditTransfer:
    base = dict(
        end_to_end_id=f"ENT{i:06d}-202612",
        amount_fen=amount,
        creditor_name="张三",
        creditor_account=CREDITOR_ACCOUNT,
        remittance="2026-12 低保金",
    )
    base.update(kw)
    return CreditTransfer(**base)


def batch(transfers=None, **kw) -> BankBatch:
    base = dict(
        batch_id="PAY-2026-12-ICBC-0001",
        created_at=CREATED,
        initiating_party="某某县民政局",
        debtor_name="某某县民政局社会救助资金专户",
        debtor_account=DEBTOR_ACCOUNT,
        requested_execution_date=date(2026, 12, 5),
        transfers=tuple(transfers) if transfers is not None else (transfer(),),
        debtor_agent_bic="ICBKCNBJXXX",
    )
    base.update(kw)
    return BankBatch(**base)


def assert_valid(xml: bytes, message: str) -> etree._Element:
    root = etree.fromstring(xml)
    xsd = schema(message)
    assert xsd.validate(root), xsd.error_log
    return root


# -- amounts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fen, text",
    [(0, "0.00"), (1, "0.01"), (10, "0.10"), (99, "0.99"), (100, "1.00"), (12345, "123.45"),
     (99_999_999, "999999.99"), (10**17 + 7, "1000000000000000.07")],
)
def test_fen_and_decimal_convert_exactly_both_ways(fen, text):
    assert fen_to_decimal(fen) == text
    assert decimal_to_fen(text) == fen


@pytest.mark.parametrize("text, fen", [("5", 500), ("0.1", 10), ("5.", 500), (".05", 5), ("007.50", 750)])
def test_decimal_to_fen_accepts_xsd_decimal_spellings(text, fen):
    assert decimal_to_fen(text) == fen


@pytest.mark.parametrize("text", ["1.234", "0.001", "-1.00", "-0", "", ".", "1e3", " 1.00", "1,00", "+1", "NaN", "１.00"])
def test_decimal_to_fen_refuses(text):
    with pytest.raises(ValueError):
        decimal_to_fen(text)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "100"])
def test_fen_to_decimal_refuses(bad):
    with pytest.raises((ValueError, TypeError)):
        fen_to_decimal(bad)


# -- pain.001 --------------------------------------------------------------------------------


def test_pain001_with_a_bic_validates_and_carries_everything():
    xml = build_pain001(batch())
    root = assert_valid(xml, "pain.001.001.09")
    f = lambda p: root.findtext(p, namespaces=NS001)  # noqa: E731
    assert f("d:CstmrCdtTrfInitn/d:GrpHdr/d:MsgId") == "PAY-2026-12-ICBC-0001"
    assert f("d:CstmrCdtTrfInitn/d:GrpHdr/d:CreDtTm") == "2026-12-01T09:30:00+08:00"
    assert f("d:CstmrCdtTrfInitn/d:GrpHdr/d:NbOfTxs") == "1"
    assert f("d:CstmrCdtTrfInitn/d:GrpHdr/d:CtrlSum") == "490.00"
    assert f("d:CstmrCdtTrfInitn/d:GrpHdr/d:InitgPty/d:Nm") == "某某县民政局"
    pmt = "d:CstmrCdtTrfInitn/d:PmtInf/"
    assert f(pmt + "d:DbtrAgt/d:FinInstnId/d:BICFI") == "ICBKCNBJXXX"
    assert f(pmt + "d:DbtrAcct/d:Id/d:Othr/d:Id") == DEBTOR_ACCOUNT
    assert f(pmt + "d:ReqdExctnDt/d:Dt") == "2026-12-05"
    tx = pmt + "d:CdtTrfTxInf/"
    assert f(tx + "d:PmtId/d:EndToEndId") == "ENT000001-202612"
    amt = root.find(tx + "d:Amt/d:InstdAmt", NS001)
    assert (amt.text, amt.get("Ccy")) == ("490.00", "CNY")
    assert f(tx + "d:Cdtr/d:Nm") == "张三"
    assert f(tx + "d:CdtrAcct/d:Id/d:Othr/d:Id") == CREDITOR_ACCOUNT
    assert f(tx + "d:RmtInf/d:Ustrd") == "2026-12 低保金"


def test_pain001_is_utf8_and_chinese_names_survive_in_the_bytes():
    xml = build_pain001(batch())
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "张三".encode("utf-8") in xml
    assert "某某县民政局".encode("utf-8") in xml
    assert CREDITOR_ACCOUNT.encode() in xml and DEBTOR_ACCOUNT.encode() in xml


def test_pain001_with_a_cnaps_bank_code_uses_the_clearing_system_member_id():
    xml = build_pain001(batch(debtor_agent_bic=None, debtor_agent_bank_code="102100099996"))
    root = assert_valid(xml, "pain.001.001.09")
    fin = root.find("d:CstmrCdtTrfInitn/d:PmtInf/d:DbtrAgt/d:FinInstnId", NS001)
    assert fin.findtext("d:ClrSysMmbId/d:ClrSysId/d:Cd", namespaces=NS001) == "CNAPS"
    assert fin.findtext("d:ClrSysMmbId/d:MmbId", namespaces=NS001) == "102100099996"
    assert fin.find("d:BICFI", NS001) is None


@pytest.mark.parametrize(
    "amounts",
    [[1], [99_999_999], [1, 99_999_999, 1], [1 + (i * 7919) % 100_000 for i in range(1000)],
     [99_999_999] * 1000, [1] * 1000],
    ids=["1fen", "99999999fen", "mixed", "1000-awkward", "1000-max", "1000-onefen"],
)
def test_ctrlsum_is_the_exact_sum_in_fen(amounts):
    xml = build_pain001(batch([transfer(i, a) for i, a in enumerate(amounts)]))
    root = assert_valid(xml, "pain.001.001.09")
    assert root.findtext("d:CstmrCdtTrfInitn/d:GrpHdr/d:NbOfTxs", namespaces=NS001) == str(len(amounts))
    ctrl = root.findtext("d:CstmrCdtTrfInitn/d:GrpHdr/d:CtrlSum", namespaces=NS001)
    assert decimal_to_fen(ctrl) == sum(amounts)
    instd = root.findall(".//d:InstdAmt", NS001)
    assert [decimal_to_fen(e.text) for e in instd] == amounts


def test_single_pmtinf_keeps_a_thousand_transfers_in_one_pmtinf():
    xml = build_pain001(batch([transfer(i) for i in range(1000)], single_pmtinf=True, pmtinf_size=100))
    root = assert_valid(xml, "pain.001.001.09")
    assert len(root.findall(".//d:PmtInf", NS001)) == 1


def test_several_pmtinf_when_the_bank_accepts_them():
    amounts = [i + 1 for i in range(250)]
    xml = build_pain001(batch([transfer(i, a) for i, a in enumerate(amounts)], single_pmtinf=False, pmtinf_size=100))
    root = assert_valid(xml, "pain.001.001.09")
    pmts = root.findall(".//d:PmtInf", NS001)
    assert [p.findtext("d:NbOfTxs", namespaces=NS001) for p in pmts] == ["100", "100", "50"]
    assert [p.findtext("d:PmtInfId", namespaces=NS001) for p in pmts] == [
        "PAY-2026-12-ICBC-0001-P0001", "PAY-2026-12-ICBC-0001-P0002", "PAY-2026-12-ICBC-0001-P0003"]
    assert sum(decimal_to_fen(p.findtext("d:CtrlSum", namespaces=NS001)) for p in pmts) == sum(amounts)
    with pytest.raises(ValueError, match="batch_id"):
        build_pain001(batch([transfer(i) for i in range(3)], batch_id="X" * 30, single_pmtinf=False, pmtinf_size=2))


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: batch([transfer(amount=0)]), "transfers[0].amount_fen"),
        (lambda: batch([transfer(), transfer(2, amount=-5)]), "transfers[1].amount_fen"),
        (lambda: batch([transfer(amount=1.5)]), "transfers[0].amount_fen"),
        (lambda: batch(batch_id="B" * 36), "batch_id"),
        (lambda: batch(batch_id=""), "batch_id"),
        (lambda: batch([transfer(end_to_end_id="E" * 36)]), "transfers[0].end_to_end_id"),
        (lambda: batch([transfer(1), transfer(1)]), "transfers[1].end_to_end_id"),
        (lambda: batch([]), "transfers"),
        (lambda: batch([transfer(creditor_account="6" * 35)]), "transfers[0].creditor_account"),
        (lambda: batch([transfer(creditor_name="")]), "transfers[0].creditor_name"),
        (lambda: batch(debtor_account="1" * 35), "debtor_account"),
        (lambda: batch(debtor_agent_bic=None), "debtor_agent_bic / debtor_agent_bank_code"),
        (lambda: batch(debtor_agent_bank_code="102100099996"), "debtor_agent_bic / debtor_agent_bank_code"),
        (lambda: batch(debtor_agent_bic="icbkcnbj"), "debtor_agent_bic"),
        (lambda: batch(debtor_agent_bic=None, debtor_agent_bank_code="10210009999"), "debtor_agent_bank_code"),
        (lambda: batch(created_at=datetime(2026, 12, 1, 9, 30)), "created_at"),
    ],
)
def test_pain001_refuses_bad_input_naming_the_field_and_not_the_account(make, field):
    with pytest.raises(ValueError) as info:
        build_pain001(make())
    message = str(info.value)
    assert message.startswith(field + ":"), message
    assert CREDITOR_ACCOUNT not in message and DEBTOR_ACCOUNT not in message
    assert "6" * 35 not in message and "1" * 35 not in message


# -- pain.002 --------------------------------------------------------------------------------

STATUSES = (
    TransactionStatus("ENT000001-202612", "ACSC", original_pmtinf_id="PAY-2026-12-ICBC-0001"),
    TransactionStatus("ENT000002-202612", "RJCT", "AC04", "账户已销户", "PAY-2026-12-ICBC-0001"),
    TransactionStatus("ENT000003-202612", "RJCT", "MD07", None, "PAY-2026-12-ICBC-0001"),
    TransactionStatus("ENT000004-202612", "RJCT", "AC01", None, "PAY-2026-12-ICBC-0001"),
    TransactionStatus("ENT000005-202612", "PDNG", None, None, "PAY-2026-12-ICBC-0001"),
)


def test_pain002_round_trip():
    xml = build_pain002("PAY-2026-12-ICBC-0001", STATUSES, CREATED, "ICBC-STS-0001")
    assert_valid(xml, "pain.002.001.12")
    report = parse_pain002(xml)
    assert report == StatusReport(
        msg_id="ICBC-STS-0001",
        created_at=CREATED,
        original_msg_id="PAY-2026-12-ICBC-0001",
        original_msg_name_id="pain.001.001.09",
        group_status="PART",
        transactions=STATUSES,
    )
    assert report.by_end_to_end_id()["ENT000002-202612"].rejected
    assert report.transactions[1].additional_info == "账户已销户"


def test_pain002_whole_file_rejected_and_default_pmtinf_id():
    xml = build_pain002("PAY-1", [TransactionStatus("E1", "ACCP")], CREATED, "S-1",
                        group_status="RJCT", group_reason_code="FF01")
    assert_valid(xml, "pain.002.001.12")
    report = parse_pain002(xml)
    assert (report.group_status, report.group_reason_code) == ("RJCT", "FF01")
    assert report.transactions == (TransactionStatus("E1", "ACCP", original_pmtinf_id="PAY-1"),)
    empty = parse_pain002(build_pain002("PAY-1", [], CREATED, "S-2", group_status="ACSC"))
    assert (empty.group_status, empty.transactions) == ("ACSC", ())


BANK_PAIN002 = """<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.12">
 <CstmrPmtStsRpt>
  <GrpHdr><MsgId>BANK-0001</MsgId><CreDtTm>2026-12-05T10:00:00Z</CreDtTm></GrpHdr>
  <OrgnlGrpInfAndSts><OrgnlMsgId>PAY-1</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId></OrgnlGrpInfAndSts>
  <OrgnlPmtInfAndSts>
   <OrgnlPmtInfId>PAY-1</OrgnlPmtInfId><PmtInfSts>ACSP</PmtInfSts>
   <TxInfAndSts><OrgnlEndToEndId>E1</OrgnlEndToEndId></TxInfAndSts>
   <TxInfAndSts><OrgnlEndToEndId>E2</OrgnlEndToEndId><TxSts>RJCT</TxSts>
    <StsRsnInf><Rsn><Prtry>X99</Prtry></Rsn><AddtlInf>户名不符</AddtlInf></StsRsnInf></TxInfAndSts>
  </OrgnlPmtInfAndSts>
 </CstmrPmtStsRpt>
</Document>""".encode()


def test_pain002_from_a_bank_inherits_statuses_and_reads_proprietary_reasons():
    report = parse_pain002(BANK_PAIN002)
    assert report.group_status is None
    assert report.created_at == datetime(2026, 12, 5, 10, tzinfo=timezone.utc)
    assert report.transactions == (
        TransactionStatus("E1", "ACSP", None, None, "PAY-1"),
        TransactionStatus("E2", "RJCT", "X99", "户名不符", "PAY-1"),
    )
    assert report.payment_infos[0].status == "ACSP"


def test_pain002_status_without_end_to_end_id_is_refused():
    xml = BANK_PAIN002.replace(b"<OrgnlEndToEndId>E1</OrgnlEndToEndId>", b"<OrgnlInstrId>I1</OrgnlInstrId>")
    with pytest.raises(Iso20022Error, match="OrgnlEndToEndId"):
        parse_pain002(xml)


def test_pain002_builder_refuses_bad_statuses():
    with pytest.raises(ValueError, match=r"statuses\[0\].end_to_end_id"):
        build_pain002("PAY-1", [TransactionStatus("E" * 36, "ACSC")], CREATED, "S-1")
    with pytest.raises(ValueError, match=r"statuses\[0\].status"):
        build_pain002("PAY-1", [TransactionStatus("E1", "ACCEPTED")], CREATED, "S-1")


# -- tampered and hostile files --------------------------------------------------------------

GOOD_PAIN002 = build_pain002("PAY-2026-12-ICBC-0001", STATUSES, CREATED, "ICBC-STS-0001")

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.12"><CstmrPmtStsRpt><GrpHdr><MsgId>&lol9;</MsgId>
<CreDtTm>2026-12-05T10:00:00Z</CreDtTm></GrpHdr></CstmrPmtStsRpt></Document>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.12"><CstmrPmtStsRpt><GrpHdr><MsgId>&xxe;</MsgId>
<CreDtTm>2026-12-05T10:00:00Z</CreDtTm></GrpHdr><OrgnlGrpInfAndSts><OrgnlMsgId>P</OrgnlMsgId>
<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId></OrgnlGrpInfAndSts></CstmrPmtStsRpt></Document>"""


@pytest.mark.parametrize(
    "xml, expected",
    [
        (GOOD_PAIN002.replace(b"pain.002.001.12", b"pain.002.001.10"), "namespace"),
        (GOOD_PAIN002.replace(b"<OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>", b""), "not valid against the XSD: line"),
        (GOOD_PAIN002.replace(b"<TxSts>RJCT</TxSts>", b"<TxSts>REJECTED</TxSts>", 1), "not valid against the XSD: line"),
        (b"\x00\xff\xfe garbage \x89PNG", "not well-formed"),
        (b"", "empty"),
        (b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pain.002.001.12'><CstmrPmtStsRpt>", "not well-formed"),
        (BOMB, "DOCTYPE"),
        (XXE, "DOCTYPE"),
    ],
    ids=["wrong-namespace", "missing-required", "bad-code", "garbage", "empty", "truncated", "xml-bomb", "xxe"],
)
def test_tampered_pain002_raises_a_readable_error(xml, expected):
    with pytest.raises(Iso20022Error) as info:
        parse_pain002(xml)
    assert expected in str(info.value)
    assert str(info.value).startswith("pain.002.001.12:")
    assert "root:" not in str(info.value)  # nothing from /etc/passwd


def test_schema_errors_do_not_quote_account_numbers_or_names():
    # A statement whose account number is too long: the XSD error must not echo it.
    statement = STATEMENT
    xml = build_camt053(statement).replace(DEBTOR_ACCOUNT.encode(), b"9" * 40)
    with pytest.raises(Iso20022Error) as info:
        parse_camt053(xml)
    assert "9" * 34 not in str(info.value)
    assert "Element 'Id': [facet 'maxLength']" in str(info.value)
    bad_name = GOOD_PAIN002.replace(b"<TxSts>RJCT</TxSts>", "<TxSts>张三李四王五</TxSts>".encode(), 1)
    with pytest.raises(Iso20022Error) as info:
        parse_pain002(bad_name)
    assert "张三" not in str(info.value) and "TxSts" in str(info.value)
    bad_indicator = build_camt053(STATEMENT).replace(b"<CdtDbtInd>DBIT</CdtDbtInd>", "<CdtDbtInd>张三</CdtDbtInd>".encode(), 1)
    with pytest.raises(Iso20022Error) as info:
        parse_camt053(bad_indicator)
    message = str(info.value)
    assert "张三" not in message and "'…'" in message and "'CRDT'" in message, message
    bad_bic = build_pain001(batch()).replace(b"ICBKCNBJXXX", b"icbk" + CREDITOR_ACCOUNT.encode())
    errors = schema("pain.001.001.09")
    assert not errors.validate(etree.fromstring(bad_bic))
    from lifeline.iso20022._xml import redact

    redacted = redact(errors.error_log[0].message, "pain.001.001.09")
    assert CREDITOR_ACCOUNT not in redacted and "[facet 'pattern']" in redacted, redacted


def test_a_huge_text_node_is_refused_by_the_parser_limits():
    huge = GOOD_PAIN002.replace(b"<MsgId>ICBC-STS-0001</MsgId>", b"<MsgId>" + b"A" * 20_000_000 + b"</MsgId>")
    with pytest.raises(Iso20022Error):
        parse_pain002(huge)


# -- camt.053 --------------------------------------------------------------------------------

STATEMENT = Statement(
    msg_id="ICBC-STMT-20261205",
    statement_id="STMT-20261205-0001",
    created_at=datetime(2026, 12, 5, 23, 0, tzinfo=CST),
    account=DEBTOR_ACCOUNT,
    entries=(
        StatementEntry(49_000, "DBIT", date(2026, 12, 5), "ENT000001-202612"),
        StatementEntry(1, "DBIT", date(2026, 12, 5), "ENT000002-202612", entry_ref="N2"),
        StatementEntry(99_999_999, "DBIT", date(2026, 12, 5), "ENT000003-202612"),
        StatementEntry(1, "CRDT", date(2026, 12, 6), "ENT000002-202612", return_reason="AC04"),
        StatementEntry(500_000_00, "CRDT", date(2026, 12, 1)),
    ),
    opening_balance=Balance(-12_345, date(2026, 12, 1)),
    closing_balance=Balance(1_000_000_01, date(2026, 12, 6)),
)


def test_camt053_round_trip_and_valid():
    xml = build_camt053(STATEMENT)
    root = assert_valid(xml, "camt.053.001.08")
    assert parse_camt053(xml) == STATEMENT
    ns = {"d": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"}
    amounts = [e.text for e in root.findall(".//d:Ntry/d:Amt", ns)]
    assert amounts == ["490.00", "0.01", "999999.99", "0.01", "500000.00"]
    assert root.findtext(".//d:Ntry[4]/d:NtryDtls/d:TxDtls/d:RtrInf/d:Rsn/d:Cd", namespaces=ns) == "AC04"


def test_camt053_balances_are_optional_but_one_is_needed():
    only_closing = dataclasses.replace(STATEMENT, opening_balance=None, entries=())
    assert parse_camt053(build_camt053(only_closing)) == only_closing
    with pytest.raises(ValueError, match="balance"):
        build_camt053(dataclasses.replace(STATEMENT, opening_balance=None, closing_balance=None))


def test_camt053_refuses_sub_fen_amounts_and_foreign_currency():
    xml = build_camt053(STATEMENT)
    with pytest.raises(Iso20022Error, match="more than two decimals"):
        parse_camt053(xml.replace(b">490.00<", b">490.001<"))
    with pytest.raises(Iso20022Error, match="currency"):
        parse_camt053(xml.replace(b'Ccy="CNY">490.00<', b'Ccy="USD">490.00<'))


def test_camt053_batch_booked_entry_gives_one_entry_per_transaction():
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
<GrpHdr><MsgId>M</MsgId><CreDtTm>2026-12-05T23:00:00+08:00</CreDtTm></GrpHdr>
<Stmt><Id>S</Id><Acct><Id><Othr><Id>{DEBTOR_ACCOUNT}</Id></Othr></Id><Ccy>CNY</Ccy></Acct>
<Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="CNY">0</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-12-05</Dt></Dt></Bal>
<Ntry><Amt Ccy="CNY">3.5</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-12-05</Dt></BookgDt><BkTxCd/>
<NtryDtls><TxDtls><Refs><EndToEndId>E1</EndToEndId></Refs><Amt Ccy="CNY">1</Amt></TxDtls>
<TxDtls><Refs><EndToEndId>E2</EndToEndId></Refs><Amt Ccy="CNY">2.50</Amt></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>""".encode()
    s = parse_camt053(xml)
    assert s.closing_balance == Balance(0, date(2026, 12, 5))
    assert [(e.end_to_end_id, e.amount_fen, e.credit_debit) for e in s.entries] == [("E1", 100, "DBIT"), ("E2", 250, "DBIT")]


def test_camt053_tampered():
    xml = build_camt053(STATEMENT)
    with pytest.raises(Iso20022Error, match="not valid against the XSD"):
        parse_camt053(xml.replace(b"<CdtDbtInd>DBIT</CdtDbtInd>", b"<CdtDbtInd>DEBIT</CdtDbtInd>", 1))
    with pytest.raises(Iso20022Error, match="namespace"):
        parse_camt053(GOOD_PAIN002)


# -- schemas ---------------------------------------------------------------------------------


def test_schemas_are_compiled_once():
    assert schema("pain.001.001.09") is schema("pain.001.001.09")


def test_the_xsd_packages_are_never_imported():
    code = (
        "import sys, lifeline.iso20022 as m\n"
        "[m.schema(k) for k in m.SCHEMAS]\n"
        "assert 'pain001' not in sys.modules and 'camt053' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("xml", [BOMB, XXE], ids=["xml-bomb", "xxe"])
def test_the_parser_itself_is_safe_even_without_the_doctype_guard(xml):
    from lifeline.iso20022._xml import safe_parser

    try:
        root = etree.fromstring(xml, safe_parser())
    except etree.XMLSyntaxError:
        return  # libxml2 refused the amplification: fine
    text = etree.tostring(root)
    assert b"root:" not in text and b"lollollol" not in text


def test_a_bank_reads_back_what_a_pain001_instructs():
    from lifeline.iso20022 import parse_pain001

    b = batch()
    received = parse_pain001(build_pain001(b))
    assert received.msg_id == b.batch_id and received.debtor_account == b.debtor_account
    assert received.transfers == b.transfers
    with pytest.raises(Iso20022Error):
        parse_pain001(build_pain001(b).replace(b"CstmrCdtTrfInitn>", b"Nothing>"))
