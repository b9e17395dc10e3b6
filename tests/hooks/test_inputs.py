"""Local validation (airflow_provider_mj.inputs): every check, and what its error tells the user."""

from __future__ import annotations

import base64

import pytest

from airflow_provider_mj import inputs
from airflow_provider_mj.exceptions import MidjourneyValidationError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
GIF = b"GIF89a" + b"\x00" * 32
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 32


def test_prompt_must_not_be_blank():
    for bad in ("", "   ", None):
        with pytest.raises(MidjourneyValidationError, match="prompt is empty"):
            inputs.validate_prompt(bad)


def test_prompt_is_stripped_and_length_limited():
    assert inputs.validate_prompt("  a cat  ") == "a cat"
    with pytest.raises(MidjourneyValidationError, match="limit is 6000"):
        inputs.validate_prompt("x" * (inputs.MAX_PROMPT_LENGTH + 1))


def test_optional_prompt_may_be_empty():
    assert inputs.validate_prompt("", required=False) is None


def test_state_is_at_most_255_characters():
    assert inputs.validate_state("x" * 255) == "x" * 255
    with pytest.raises(MidjourneyValidationError, match="255"):
        inputs.validate_state("x" * 256)
    with pytest.raises(MidjourneyValidationError, match="string"):
        inputs.validate_state(12)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "https://", "http:// bad.com/x", 5])
def test_notify_hook_must_be_an_http_url(url):
    with pytest.raises(MidjourneyValidationError, match="notify_hook"):
        inputs.validate_notify_hook(url)


def test_notify_hook_is_at_most_2000_characters():
    ok = "https://example.com/" + "a" * 1980
    assert inputs.validate_notify_hook(ok) == ok
    with pytest.raises(MidjourneyValidationError, match="2000"):
        inputs.validate_notify_hook(ok + "aaaaa")


def test_link_must_be_http_with_a_host():
    assert inputs.validate_link("https://cdn.example.com/cat.png")
    with pytest.raises(MidjourneyValidationError, match="link"):
        inputs.validate_link("file:///etc/passwd")


def test_dimensions_are_an_enum_in_any_case():
    assert inputs.validate_dimensions("landscape") == "LANDSCAPE"
    assert inputs.validate_dimensions(None) == "SQUARE"
    with pytest.raises(MidjourneyValidationError, match="PORTRAIT, SQUARE, LANDSCAPE"):
        inputs.validate_dimensions("WIDE")


def test_bot_type_is_an_enum():
    assert inputs.validate_bot_type("niji_journey") == "NIJI_JOURNEY"
    assert inputs.validate_bot_type(None) is None
    with pytest.raises(MidjourneyValidationError, match="MID_JOURNEY"):
        inputs.validate_bot_type("DALLE")


def test_account_filter_modes_are_checked():
    assert inputs.validate_account_filter({"modes": ["fast"], "instanceId": "1"}) == {
        "modes": ["FAST"], "instanceId": "1"}
    with pytest.raises(MidjourneyValidationError, match="modes"):
        inputs.validate_account_filter({"modes": "FAST"})
    with pytest.raises(MidjourneyValidationError, match="RELAX, FAST, TURBO"):
        inputs.validate_account_filter({"modes": ["SLOW"]})


def test_task_id_and_custom_id_must_not_be_blank():
    with pytest.raises(MidjourneyValidationError, match="mj_task_id is empty"):
        inputs.validate_mj_task_id(" ")
    assert inputs.validate_mj_task_id(1320098173412546) == "1320098173412546"
    with pytest.raises(MidjourneyValidationError, match="custom_id is empty"):
        inputs.validate_custom_id("")


@pytest.mark.parametrize("data,mime", [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                       (WEBP, "image/webp")])
def test_image_types_are_sniffed_from_magic_bytes(data, mime):
    assert inputs.sniff_image_type(data) == mime
    assert inputs.to_data_url(data).startswith(f"data:{mime};base64,")


def test_to_data_url_reads_a_local_file(tmp_path):
    path = tmp_path / "ref.jpg"
    path.write_bytes(JPEG)
    url = inputs.to_data_url(path)
    assert url == "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert inputs.to_data_url(str(path)) == url


def test_to_data_url_says_when_the_file_is_missing(tmp_path):
    with pytest.raises(MidjourneyValidationError, match="no file at"):
        inputs.to_data_url(tmp_path / "nope.png")


def test_to_data_url_refuses_files_that_are_not_images(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(MidjourneyValidationError, match="not a PNG, JPEG, WEBP or GIF"):
        inputs.to_data_url(path)


def test_to_data_url_refuses_http_urls_with_a_hint():
    with pytest.raises(MidjourneyValidationError, match="link="):
        inputs.to_data_url("https://example.com/cat.png")


def test_data_urls_are_checked():
    good = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert inputs.validate_data_url(good) == good
    with pytest.raises(MidjourneyValidationError, match="image/bmp"):
        inputs.validate_data_url("data:image/bmp;base64,AAAA")
    with pytest.raises(MidjourneyValidationError, match="not valid base64"):
        inputs.validate_data_url("data:image/png;base64,@@@not-base64@@@")
    with pytest.raises(MidjourneyValidationError, match="no image data"):
        inputs.validate_data_url("data:image/png;base64,")
    with pytest.raises(MidjourneyValidationError, match="not a base64 data URL"):
        inputs.validate_data_url("data:image/png,rawbytes")


def test_image_lists_count_is_checked():
    with pytest.raises(MidjourneyValidationError, match="2 to 5"):
        inputs.to_data_urls([PNG], min_count=2, max_count=5)
    with pytest.raises(MidjourneyValidationError, match="2 to 5"):
        inputs.to_data_urls([PNG] * 6, min_count=2, max_count=5)
    with pytest.raises(MidjourneyValidationError, match="must be a list"):
        inputs.to_data_urls("a.png")
    assert len(inputs.to_data_urls([PNG, JPEG], min_count=2, max_count=5)) == 2
