"""Import rules: bounded amounts, conflicting references, future dates, encodings, tier grants,
error counts; through the use cases and the real ``loyalty`` command."""

from datetime import UTC, datetime

import pytest

from core.imports import ImportFailed, import_points
from tests.core.import_kit import HEADER, points_of, write

# --- 1. bounded amounts ---------------------------------------------------------------------


@pytest.mark.parametrize("points", ["99999999999999999999", "9223372036854775807", "1000001"])
def test_a_huge_points_row_is_refused_with_its_line(cli, members, tmp_path, capsys, run, now,
                                                    points):
    path = write(tmp_path, "p.csv", HEADER + "13800138000,100,bill,2026-10-01,OK-1\n"
                 f"13800138000,{points},bill,2026-10-01,HUGE-1\n")
    assert cli(["import", "points", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"line 3: points {points} is beyond the largest allowed, 1000000" in err
    assert points_of(run, now) == 0  # nothing of the file applied
    assert cli(["check", "ledger"]) == 0


def test_a_row_lifting_a_balance_above_the_maximum_is_refused(members, run, now, tmp_path):
    rows = "".join(f"13800138000,1000000,bill,2026-10-01,BIG-{n}\n" for n in range(101))
    with pytest.raises(ImportFailed) as failed:
        run(import_points, write(tmp_path, "p.csv", HEADER + rows), now)
    assert failed.value.errors == [
        (102, "this row would lift the balance to 101000000, above the largest allowed, "
              "100000000 (programme.max_balance)")]
    assert points_of(run, now) == 0


# --- 3, 4, 5, 9. conflicts, future dates, error counts, whole file or nothing -----------------


def test_a_reference_imported_with_other_content_is_a_conflict(members, run, now, tmp_path):
    run(import_points, write(tmp_path, "a.csv", HEADER + "13800138000,500,bill,2026-10-01,R1\n"),
        now)
    same = run(import_points, write(tmp_path, "b.csv",
                                    HEADER + "13800138000,500,bill,2026-10-01,R1\n"), now)
    assert (same.created, same.skipped) == (0, 1)
    with pytest.raises(ImportFailed) as failed:
        run(import_points, write(tmp_path, "c.csv", HEADER
                                 + "15800158000,50,bill,2026-10-02,R2\n"
                                 + "13800138000,600,bill,2026-10-01,R1\n"), now)
    assert failed.value.errors == [
        (3, "reference 'R1' was imported before with other content: stored 13800138000 500 "
            "bill 2026-10-01, this line has 13800138000 600 bill 2026-10-01")]
    assert points_of(run, now) == 500 and points_of(run, now, "15800158000") == 0


def test_a_reference_twice_in_one_file_names_both_lines(members, run, now, tmp_path):
    with pytest.raises(ImportFailed) as failed:
        run(import_points, write(tmp_path, "p.csv", HEADER
                                 + "13800138000,500,bill,2026-10-01,R1\n"
                                 + "13800138000,500,bill,2026-10-03,R1\n"), now)
    assert failed.value.errors == [
        (3, "reference 'R1' is also on line 2 with other content: line 2 has 13800138000 500 "
            "bill 2026-10-01, this line has 13800138000 500 bill 2026-10-03")]
    twice = run(import_points, write(tmp_path, "q.csv", HEADER
                                     + "13800138000,500,bill,2026-10-01,R1\n" * 2), now)
    assert (twice.rows, twice.created, twice.skipped) == (2, 1, 1)
    assert points_of(run, now) == 500


def test_a_future_earned_on_is_refused_in_the_programme_time_zone(members, run, tmp_path):
    evening = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # 01:00 on the 23rd in Shanghai
    path = write(tmp_path, "p.csv", HEADER + "13800138000,10,bill,2026-11-23,T\n"
                 "13800138000,10,bill,2026-11-24,F\n")
    with pytest.raises(ImportFailed) as failed:
        run(import_points, path, evening)
    assert failed.value.errors == [
        (3, "earned_on 2026-11-24 is in the future (today is 2026-11-23 in Asia/Shanghai)")]
    run(import_points, write(tmp_path, "ok.csv", HEADER + "13800138000,10,bill,2026-11-23,T\n"),
        evening)
    assert points_of(run, evening) == 10


def test_the_error_count_is_the_true_one_when_the_list_is_capped(cli, tmp_path, capsys):
    rows = "".join(f"1380013{n:04d},A,fr\n" for n in range(25))
    path = write(tmp_path, "m.csv", "msisdn,name,language\n" + rows)
    assert cli(["import", "members", str(path)]) == 1
    err = capsys.readouterr().err
    assert "nothing imported, 25 problem(s)" in err
    assert err.count("language must be") == 20 and "and 5 more (the first 20 shown)" in err


# --- 6, 7. encodings and unreadable paths ---------------------------------------------------


def test_a_gb18030_file_from_chinese_excel_is_detected(cli, store, tmp_path, capsys):
    path = write(tmp_path, "m.csv", "msisdn,name,language\r\n13800138000,张伟,zh\r\n", "gb18030")
    assert path.read_bytes().count(b"\xd5\xc5\xce\xb0") == 1  # 张伟 in GB18030
    assert cli(["import", "members", str(path)]) == 0
    with store.unit_of_work() as uow:
        assert uow.members.get_member("13800138000").name == "张伟"
    bom = write(tmp_path, "bom.csv", "\ufeffmsisdn,name,language\n15800158000,王芳,zh\n")
    assert cli(["import", "members", str(bom)]) == 0
    with store.unit_of_work() as uow:
        assert uow.members.get_member("15800158000").name == "王芳"


def test_encoding_can_be_named_and_a_misfit_is_said_clearly(cli, store, tmp_path, capsys):
    text = "msisdn,name,language\n13800138000,張偉,zh\n"
    big5 = write(tmp_path, "big5.csv", text, "big5")
    assert cli(["import", "members", "--encoding", "big5", str(big5)]) == 0
    with store.unit_of_work() as uow:
        assert uow.members.get_member("13800138000").name == "張偉"
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"msisdn,name,language\n15800158000,A\x80,zh\n")
    assert cli(["import", "members", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 2: the file is neither UTF-8 nor GB18030 (byte 0x80)" in err
    assert "--encoding NAME" in err
    assert cli(["import", "members", "--encoding", "utf-9", str(big5)]) == 1
    assert "unknown encoding 'utf-9'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["members", "points", "rewards", "deliveries"])
def test_a_directory_or_missing_file_is_one_line_not_a_traceback(cli, tmp_path, capsys, kind):
    assert cli(["import", kind, str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path} is a directory: give the CSV file itself, " \
        f"e.g. {tmp_path / 'members.csv'}\n"
    assert cli(["import", kind, str(tmp_path / "nope.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.csv: no such file" in err
