"""Progress on stderr: a bar on a terminal, a line every few seconds elsewhere."""

import io

from core.cli import main as loyalty
from core.imports import import_members
from core.progress import ProgressReporter


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_without_a_terminal_a_line_per_interval_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    show = ProgressReporter("import members", out, interval_s=5, clock=clock, tty=False)
    for done in range(0, 101, 10):
        show("hashing PINs", done, 100)
        clock.t += 2
    assert out.getvalue().splitlines() == [
        "import members: hashing PINs 0/100 (0%)",
        "import members: hashing PINs 30/100 (30%)",
        "import members: hashing PINs 60/100 (60%)",
        "import members: hashing PINs 90/100 (90%)",
        "import members: hashing PINs 100/100 (100%)",
    ]


def test_on_a_terminal_a_bar_redrawn_in_place():
    out, clock = io.StringIO(), Clock()
    show = ProgressReporter("import members", out, clock=clock, tty=True)
    show("writing", 0, 4)
    clock.t += 1
    show("writing", 2, 4)
    show("writing", 3, 4)  # too soon to redraw
    show("writing", 4, 4)
    assert out.getvalue() == (
        "\rimport members: writing [..............................] 0/4"
        "\rimport members: writing [###############...............] 2/4"
        "\rimport members: writing [##############################] 4/4\n")


def test_pin_hashing_of_a_members_file_reports_progress(run, now, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("msisdn,name,language,pin\n"
                    + "".join(f"1380013{n:04d},A,zh,2468\n" for n in range(450)))
    seen = []
    run(import_members, path, now, progress=lambda *a: seen.append(a))
    pins = [a for a in seen if a[0] == "hashing PINs"]
    assert pins == [("hashing PINs", n, 450) for n in (0, 200, 400, 450)]
    assert seen[-1] == ("writing", 450, 450)


def test_the_command_shows_the_steps_on_stderr(monkeypatch, database_url, tmp_path, capsys):
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    path = tmp_path / "m.csv"
    path.write_text("msisdn,name,language,pin\n13800138000,A,zh,2468\n")
    assert loyalty(["import", "members", str(path)]) == 0
    captured = capsys.readouterr()
    assert "import members: hashing PINs 1/1 (100%)" in captured.err
    assert "import members: writing 1/1 (100%)" in captured.err
    assert captured.out == "members: 1 rows, 1 new, 0 updated, 0 already imported\n"
