"""What the import, tier-grant and account-limit tests share: two members, CSV files written as
ops would (the `members` and `cli` fixtures are in conftest.py)."""

from core.accounts import balance

MEMBERS = "msisdn,name,language\n13800138000,张伟,zh\n15800158000,Alice,en\n"
HEADER = "msisdn,points,source,earned_on,reference\n"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def points_of(run, now, msisdn="13800138000"):
    return run(balance, msisdn, now).points
