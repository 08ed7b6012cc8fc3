"""The prompt manifest: every id the hotline needs, in every language, well formed."""

from __future__ import annotations

import pytest

from prompts.manifest import ID_RE, ManifestError, load_manifest

# What the hotline spec asks for (the IVR refers to these ids).
REQUIRED = """
welcome lang_switched goodbye gen_please_wait
auth_enter_number auth_not_member auth_enter_pin auth_wrong_pin auth_pin_locked
menu_main err_invalid_key err_no_input err_help err_too_many err_system
agent_transfer agent_closed unit_points sms_offer sms_sent
tier_is tier_standard tier_silver tier_gold tier_diamond tier_valid_until tier_need
tier_to_reach tier_top
bal_is bal_of_which bal_expire_on bal_none_expiring
hist_latest hist_none hist_kind_credit hist_kind_debit hist_kind_expiry hist_kind_adjustment
hist_kind_penalty hist_kind_refund hist_kind_makeup hist_more hist_no_more
redeem_categories redeem_category_empty redeem_item redeem_costs redeem_more redeem_choose
redeem_enter_pin redeem_confirm_intro redeem_confirm_for redeem_confirm_keys redeem_success
redeem_sms_sent redeem_cancelled redeem_insufficient redeem_out_of_stock redeem_limit_reached
redeem_not_available redeem_accepted redeem_applying_sms
dlv_latest dlv_none dlv_order dlv_status dlv_status_pending dlv_status_shipped
dlv_status_in_transit dlv_status_delivered dlv_status_returned dlv_status_cancelled
dlv_courier dlv_tracking dlv_next
warn_intro warn_you_have warn_expire_on warn_options
""".split()


@pytest.fixture(scope="module")
def manifest():
    return load_manifest()


def test_version_and_languages(manifest):
    assert manifest.version
    assert manifest.languages == ("zh", "en")


def test_every_required_id_is_defined(manifest):
    assert [i for i in REQUIRED if i not in manifest] == []


def test_every_id_has_every_language_and_is_snake_case(manifest):
    for prompt_id in manifest.ids:
        assert ID_RE.match(prompt_id), prompt_id
        for lang in manifest.languages:
            text = manifest.text(prompt_id, lang)
            assert text and text.strip(), (prompt_id, lang)


def test_zh_texts_are_chinese_and_en_texts_are_not(manifest):
    for prompt_id in manifest.ids:
        zh = "".join(t for lang, t in manifest.segments(prompt_id, "zh") if lang == "zh")
        en = "".join(t for lang, t in manifest.segments(prompt_id, "en") if lang == "en")
        assert any("\u4e00" <= ch <= "\u9fff" for ch in zh), prompt_id
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in en), prompt_id


def test_menu_offers_the_other_language_in_that_language(manifest):
    assert ("en", "For English, press 9.") in manifest.segments("menu_main", "zh")
    assert ("zh", "普通话服务请按9。") in manifest.segments("menu_main", "en")
    # text() gives the words without the voice markup
    assert "[" not in manifest.text("menu_main", "zh")
    assert manifest.text("menu_main", "zh").endswith("For English, press 9.")


def test_main_menu_mentions_every_key(manifest):
    for lang in manifest.languages:
        text = manifest.text("menu_main", lang)
        for key in "1234590":
            assert key in text, (lang, key)


def test_text_of_unknown_id_or_language_is_none(manifest):
    assert manifest.text("no_such_prompt", "zh") is None
    assert manifest.text("welcome", "fr") is None


def write(tmp_path, body: str):
    path = tmp_path / "manifest.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_missing_language_is_reported(tmp_path):
    path = write(tmp_path, 'version = "1"\nlanguages = ["zh", "en"]\n'
                           '[prompts.welcome]\nzh = "您好"\n'
                           '[prompts.bye]\nzh = "再见"\nen = "Bye"\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.problems == ["welcome: no en text"]


def test_every_problem_is_listed_at_once(tmp_path):
    path = write(tmp_path, 'languages = ["zh", "en"]\n'
                           '[prompts.Bad-Id]\nzh = "x"\nen = "x"\n'
                           '[prompts.empty]\nzh = ""\nen = "x"\nfr = "x"\n')
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    text = " | ".join(info.value.problems)
    assert "'version' is missing" in text
    assert "'Bad-Id': ids are lowercase snake_case" in text
    assert "empty.zh: empty text" in text
    assert "empty.fr: not a language of this manifest" in text


def test_unreadable_manifest(tmp_path):
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_manifest(write(tmp_path, "version = \n"))
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "nope.toml")
