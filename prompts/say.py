"""What Asterisk plays for SAY NUMBER / SAY DATETIME in Mandarin, and the sound pack for it.

Asterisk's ``main/say.c`` speaks numbers for any channel language starting with ``zh`` by
playing single files from ``<sounds>/zh/digits/``; no official Mandarin pack exists, so this
product ships one (``prompts/audio/zh/digits/``). The facts below were read from say.c
(``ast_say_number_full_zh``, ``ast_say_date_with_format_zh``, ``ast_say_time_zh``,
``ast_say_datetime_zh``, ``say_digit_str_full``); the Python functions are a behavioural model
of them, used by the tests to prove the pack is complete and by tools that want to show what a
caller will hear.

Numbers (SAY NUMBER, zh):
  0 -> digits/0; 1..9 -> digits/N; tens -> digits/10, digits/20 ... digits/90 then the unit;
  hundreds -> digits/N digits/hundred; thousands -> digits/N digits/thousand;
  10^4..10^8-1 -> (number of ten-thousands) digits/wan; 10^8..10^9-1 -> (...) digits/yi;
  a skipped place plays digits/0 once (1005 -> 1 thousand 0 5); negative -> digits/minus.
Dates (SAY DATETIME with a format, zh):
  Y  -> year >= 2000: digits/2 digits/thousand [digits/<tens> digits/<units>] digits/year
        (so 2026 is "二千二六年", not the usual "二零二六年": see ``zh_date_format``)
  B b h m -> digits/mon-0 .. digits/mon-11 (each a whole month word: 一月 ... 十二月)
  d e -> digits/<day> (1..9, 10, 20, 30) or digits/<tens> digits/<units>, then digits/day
  A a -> digits/day-0 (Sunday) .. digits/day-6
  I l -> digits/<1..12> digits/oclock;  H k -> [digits/0] hour like d, digits/oclock
  M   -> [digits/0] minute like d, digits/minute;  S -> same, digits/second
  P p -> digits/a-m / digits/p-m;  Q q -> digits/today / digits/yesterday or a date
  'name' -> the literal sound file <sounds>/<lang>/name
Digit strings (SAY DIGITS): digits/0..9, digits/star, digits/pound, digits/minus.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

# --------------------------------------------------------------------------- the pack

#: Every file of the Mandarin ``digits/`` pack, with the text it speaks.
ZH_DIGITS: dict[str, str] = {
    "0": "零", "1": "一", "2": "二", "3": "三", "4": "四",
    "5": "五", "6": "六", "7": "七", "8": "八", "9": "九",
    "10": "十", "11": "十一", "12": "十二",
    "20": "二十", "30": "三十", "40": "四十", "50": "五十",
    "60": "六十", "70": "七十", "80": "八十", "90": "九十",
    "hundred": "百", "thousand": "千", "wan": "万", "yi": "亿",
    "minus": "负", "star": "星号", "pound": "井号",
    "year": "年", "day": "日",
    "mon-0": "一月", "mon-1": "二月", "mon-2": "三月", "mon-3": "四月",
    "mon-4": "五月", "mon-5": "六月", "mon-6": "七月", "mon-7": "八月",
    "mon-8": "九月", "mon-9": "十月", "mon-10": "十一月", "mon-11": "十二月",
    "day-0": "星期日", "day-1": "星期一", "day-2": "星期二", "day-3": "星期三",
    "day-4": "星期四", "day-5": "星期五", "day-6": "星期六",
    "a-m": "上午", "p-m": "下午", "oclock": "点", "minute": "分", "second": "秒",
    "today": "今天", "yesterday": "昨天",
}

#: Relative names as Asterisk asks for them (``digits/<name>``).
ZH_DIGITS_FILES: tuple[str, ...] = tuple(f"digits/{name}" for name in ZH_DIGITS)

# --------------------------------------------------------------------------- formats

#: say.c's own Mandarin order (year, month, day). Works with the pack, but say.c reads years
#: after 2000 as "二千" + two single digits (2026 -> 二千二六年); prefer ``zh_date_format``.
ZH_DATETIME_FORMAT = "YBd"

#: English: "December thirty-first two thousand twenty six" (Asterisk's English core sounds:
#: digits/mon-N, digits/h-N ordinals, numbers).
EN_DATETIME_FORMAT = "BdY"


def zh_date_format(day: date) -> str:
    """A SAY DATETIME format giving the natural Mandarin date, e.g. 二零二六年十二月三十一日.

    The year is spelled digit by digit with literal ``'digits/N'`` files (what people say),
    then say.c's own month ("B") and day ("d") items. Pass the same instant to SAY DATETIME
    that ``day`` was taken from (in the programme's time zone).
    """
    year = "".join(f"'digits/{ch}' " for ch in f"{day.year:04d}")
    return f"{year}'digits/year' Bd"


def date_format(lang: str, day: date) -> str:
    """The SAY DATETIME format to speak ``day`` in ``lang`` ('zh...' or anything else)."""
    return zh_date_format(day) if lang.lower().startswith("zh") else EN_DATETIME_FORMAT


# --------------------------------------------------------------------------- numbers model


def _place_gap(last_length: int, length: int) -> bool:
    # say.c compares an int with strlen() (unsigned): a negative difference wraps to "large".
    return last_length != 0 and ((last_length - length) % (1 << 64)) > 1


def zh_number_files(num: int) -> list[str]:
    """The files ``SAY NUMBER num`` plays on a zh channel, in order."""
    if num == 0:
        return ["digits/0"]
    out: list[str] = []
    _zh_number(num, out)
    return out


def _zh_number(num: int, out: list[str]) -> None:
    play_hundred = play_thousand = play_zero = False
    last_length = 0
    while num or play_hundred or play_thousand or play_zero:
        if num < 0:
            name = "digits/minus"
            num = -num
        elif play_zero:
            name = "digits/0"
            last_length = 0
            play_zero = False
        elif play_hundred:
            name = "digits/hundred"
            play_hundred = False
        elif play_thousand:
            name = "digits/thousand"
            play_thousand = False
        elif num < 10:
            if _place_gap(last_length, len(str(num))):
                last_length = len(str(num))
                play_zero = True
                continue
            name = f"digits/{num}"
            num = 0
        elif num < 1000:
            length = len(str(num))
            if _place_gap(last_length, length):
                last_length = length
                play_zero = True
                continue
            last_length = length
            if num < 100:
                name = f"digits/{(num // 10) * 10}"
                num %= 10
            else:
                name = f"digits/{num // 100}"
                play_hundred = True
                num %= 100
        elif num < 10_000:
            name = f"digits/{num // 1000}"
            play_thousand = True
            last_length = len(str(num))
            num %= 1000
        elif num < 100_000_000:
            _zh_number(num // 10_000, out)
            last_length = len(str(num))
            num %= 10_000
            name = "digits/wan"
        elif num < 1_000_000_000:
            _zh_number(num // 100_000_000, out)
            last_length = len(str(num))
            num %= 100_000_000
            name = "digits/yi"
        else:
            raise ValueError(f"say.c cannot say {num} in Mandarin (limit 999,999,999)")
        out.append(name)


# --------------------------------------------------------------------------- dates model


def _two_places(value: int) -> list[str]:
    if value % 10 == 0 or value < 10:
        return [f"digits/{value}"]
    return [f"digits/{value - value % 10}", f"digits/{value % 10}"]


def _parse_format(fmt: str):
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "'":
            end = fmt.find("'", i + 1)
            end = len(fmt) if end < 0 else end
            yield "'", fmt[i + 1:end]
            i = end + 1
            continue
        yield ch, None
        i += 1


def zh_datetime_files(fmt: str, when: datetime, now: datetime | None = None) -> list[str]:
    """The files ``SAY DATETIME`` plays on a zh channel for ``fmt`` at local time ``when``."""
    out: list[str] = []
    wday = (when.weekday() + 1) % 7  # struct tm: Sunday = 0
    for item, literal in _parse_format(fmt):
        if item == "'":
            out.append(literal or "")
        elif item in "Aa":
            out.append(f"digits/day-{wday}")
        elif item in "Bbhm":
            out.append(f"digits/mon-{when.month - 1}")
        elif item in "de":
            out += _two_places(when.day) + ["digits/day"]
        elif item == "Y":
            tm_year = when.year - 1900
            if tm_year > 99:
                out += ["digits/2", "digits/thousand"]
                if tm_year > 100:
                    out += [f"digits/{(tm_year - 100) // 10}", f"digits/{(tm_year - 100) % 10}"]
            elif tm_year >= 1:
                out += ["digits/1", "digits/9"]
                if tm_year <= 9:
                    out += ["digits/0", f"digits/{tm_year}"]
                else:
                    out += [f"digits/{tm_year // 10}", f"digits/{tm_year % 10}"]
            out.append("digits/year")
        elif item in "Il":
            hour = when.hour % 12 or 12
            out += [f"digits/{hour}", "digits/oclock"]
        elif item in "Hk":
            if item == "H" and when.hour < 10:
                out.append("digits/0")
            out += _two_places(when.hour) + ["digits/oclock"]
        elif item in "MS":
            value = when.minute if item == "M" else when.second
            if value < 10:
                out.append("digits/0")
            out += _two_places(value) + ["digits/minute" if item == "M" else "digits/second"]
        elif item in "Pp":
            out.append("digits/p-m" if when.hour > 11 else "digits/a-m")
        elif item in "Qq":
            today = (now or datetime.now(when.tzinfo)).date()
            day = when.date()
            if day >= today:
                if item == "Q":
                    out.append("digits/today")
            elif day == today - timedelta(days=1):
                out.append("digits/yesterday")
            elif item == "q" and day > today - timedelta(days=6):
                out += zh_datetime_files("A", when)
            else:
                out += zh_datetime_files("YBdA", when)
        elif item == "R":
            out += zh_datetime_files("kM", when)
        elif item == "T":
            out += zh_datetime_files("HMS", when)
        # spaces, tabs and unknown letters play nothing
    return out


def zh_time_files(when: datetime) -> list[str]:
    """``SAY TIME`` on a zh channel: a-m/p-m, hour, 点, minute, 分."""
    hour = when.hour % 12 or 12
    return (["digits/p-m" if when.hour >= 12 else "digits/a-m"] + zh_number_files(hour)
            + ["digits/oclock"] + zh_number_files(when.minute) + ["digits/minute"])
