"""Keyword parsing: every keyword, Chinese and Latin, tolerant of case, width and punctuation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.messaging import keywords as kw
from core.messaging.keywords import Command, parse

CASES = [
    # balance
    ("JF", kw.BALANCE, ""), ("jf", kw.BALANCE, ""), ("Jf", kw.BALANCE, ""),
    ("ＪＦ", kw.BALANCE, ""), ("ｊｆ", kw.BALANCE, ""), ("  JF  ", kw.BALANCE, ""),
    ("JF?", kw.BALANCE, ""), ("JF。", kw.BALANCE, ""), ("【JF】", kw.BALANCE, ""),
    ("积分", kw.BALANCE, ""), ("积分？", kw.BALANCE, ""), (" 积分 ", kw.BALANCE, ""),
    ("\u3000积分\u3000", kw.BALANCE, ""), ("balance", kw.BALANCE, ""),
    # tier, history, catalogue, delivery, stop, help
    ("DJ", kw.TIER, ""), ("dj!", kw.TIER, ""), ("等级", kw.TIER, ""),
    ("MX", kw.HISTORY, ""), ("明细", kw.HISTORY, ""), ("ｍｘ", kw.HISTORY, ""),
    ("LB", kw.CATALOGUE, ""), ("礼品", kw.CATALOGUE, ""), ("lb，", kw.CATALOGUE, ""),
    ("WL", kw.DELIVERY, ""), ("物流", kw.DELIVERY, ""), ("wl 261122000001", kw.DELIVERY, ""),
    ("TD", kw.STOP, ""), ("退订", kw.STOP, ""), ("td.", kw.STOP, ""), ("STOP", kw.STOP, ""),
    ("BZ", kw.HELP, ""), ("帮助", kw.HELP, ""), ("HELP", kw.HELP, ""), ("help me", kw.HELP, ""),
    # redeem
    ("DH A01", kw.REDEEM, "A01"), ("dh a01", kw.REDEEM, "A01"), ("DHA01", kw.UNKNOWN, ""),
    ("ＤＨ　Ａ０１", kw.REDEEM, "A01"), ("dh，a01", kw.REDEEM, "A01"),
    ("DH:A01", kw.REDEEM, "A01"), ("DH  g02 ", kw.REDEEM, "G02"), ("兑换A01", kw.REDEEM, "A01"),
    ("兑换 a01", kw.REDEEM, "A01"), ("兑换：Ａ０１", kw.REDEEM, "A01"), ("DH", kw.REDEEM, ""),
    ("兑换", kw.REDEEM, ""),
    # confirm
    ("123456", kw.CONFIRM, "123456"), ("１２３４５６", kw.CONFIRM, "123456"),
    (" 123456。", kw.CONFIRM, "123456"), ("123 456", kw.CONFIRM, "123456"),
    ("QR 123456", kw.CONFIRM, "123456"), ("qr123456", kw.CONFIRM, "123456"),
    ("确认123456", kw.CONFIRM, "123456"), ("确认：１２３４５６", kw.CONFIRM, "123456"),
    ("QR", kw.CONFIRM, ""), ("QR 12345", kw.CONFIRM, ""), ("12345", kw.UNKNOWN, ""),
    ("1234567", kw.UNKNOWN, ""),
    # tickets keep their text as sent
    ("BD 上月话费积分未到账", kw.MAKEUP, "上月话费积分未到账"),
    ("补登上月话费积分未到账", kw.MAKEUP, "上月话费积分未到账"),
    ("补登：上月积分没到", kw.MAKEUP, "上月积分没到"), ("bd", kw.MAKEUP, ""),
    ("TS 礼品一直没收到！", kw.COMPLAINT, "礼品一直没收到！"),
    ("ＴＳ：礼品，一直没收到", kw.COMPLAINT, "礼品，一直没收到"),
    ("投诉，客服态度差", kw.COMPLAINT, "客服态度差"), ("ts Gift NOT received", kw.COMPLAINT,
                                                  "Gift NOT received"),
    # consent and the monthly automatic redemption
    ("KT", kw.RESUME, ""), ("开通", kw.RESUME, ""), ("start", kw.RESUME, ""),
    ("ZD A02", kw.AUTO_REDEEM, "A02"), ("自动兑换A02", kw.AUTO_REDEEM, "A02"),
    ("自动兑换：ａ０２", kw.AUTO_REDEEM, "A02"), ("zd", kw.AUTO_REDEEM, ""),
    ("ZDA02", kw.UNKNOWN, ""), ("QXZD", kw.AUTO_CANCEL, ""), ("取消自动兑换", kw.AUTO_CANCEL, ""),
    ("qxzd。", kw.AUTO_CANCEL, ""),
    # anything else
    ("hello", kw.UNKNOWN, ""), ("", kw.UNKNOWN, ""), ("   ", kw.UNKNOWN, ""),
    ("JFK", kw.UNKNOWN, ""), ("你好", kw.UNKNOWN, ""), ("😀", kw.UNKNOWN, ""),
]


@pytest.mark.parametrize(("text", "kind", "arg"), CASES)
def test_parse(text, kind, arg):
    command = parse(text)
    assert (command.kind, command.arg) == (kind, arg)


def test_every_keyword_in_the_table_parses_to_its_command():
    for word, kind in kw.KEYWORDS.items():
        assert parse(word).kind == kind
        assert parse(word.lower()).kind == kind
        assert parse(f" {word}。").kind == kind


@given(st.text(max_size=40))
def test_parse_never_fails(text):
    command = parse(text)
    assert isinstance(command, Command) and command.kind in kw.KINDS


@given(st.text(max_size=60))
def test_a_cached_parse_is_the_fresh_parse(text):
    # ``parse`` keeps results by text: the first and the repeated answer are the uncached one.
    fresh = kw._parse(text)
    assert parse(text) == fresh
    assert parse(text) == fresh


def test_the_parse_cache_stays_bounded():
    size = kw._parse_cached.cache_info().maxsize
    for i in range(size + 10):
        parse(f"JF {i}")
    assert kw._parse_cached.cache_info().currsize <= size
    assert parse("兑换A01") == Command(kw.REDEEM, "A01", "兑换A01")
