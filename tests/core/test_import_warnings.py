"""The members CSV's optional ``warnings`` and ``warning_channel`` columns."""

import pytest

from core.imports import ImportFailed, import_members
from tests.core.test_imports import write


def chosen(store, msisdn):
    with store.unit_of_work(write=False) as uow:
        m = uow.members.get_member(msisdn)
        return m.warning_opt_out, m.warning_channel


def test_members_import_sets_warnings_and_their_channel(store, run, now, tmp_path):
    run(import_members, write(tmp_path, "m.csv",
                              "msisdn,name,language,warnings,warning_channel\n"
                              "13800138000,张伟,zh,off,\n15800158000,Alice,en,,VOICE\n"
                              "13900139000,李娜,zh,,\n"), now)
    assert chosen(store, "13800138000") == (True, "sms")
    assert chosen(store, "15800158000") == (False, "voice")
    assert chosen(store, "13900139000") == (False, "sms")
    # Empty or missing columns leave an existing member's choice alone.
    run(import_members, write(tmp_path, "m2.csv", "msisdn,name,language,warnings\n"
                              "13800138000,张伟,zh,\n15800158000,Alice,en,on\n"), now)
    assert chosen(store, "13800138000") == (True, "sms")
    assert chosen(store, "15800158000") == (False, "voice")
    run(import_members, write(tmp_path, "m3.csv", "msisdn,name,language,warnings\n"
                              "13800138000,张伟,zh,on\n"), now)
    assert chosen(store, "13800138000") == (False, "sms")


def test_bad_warning_values_name_their_line_and_nothing_is_applied(store, run, now, tmp_path):
    bad = ("msisdn,name,language,warnings,warning_channel\n13800138000,A,zh,off,\n"
           "13900139000,B,zh,maybe,\n15800158000,C,en,,fax\n")
    with pytest.raises(ImportFailed) as failed:
        run(import_members, write(tmp_path, "bad.csv", bad), now)
    assert [line for line, _ in failed.value.errors] == [3, 4]
    assert "line 4: warning_channel must be sms or voice, not 'fax'" in str(failed.value)
    with store.unit_of_work() as uow:
        assert uow.members.count_members() == 0
