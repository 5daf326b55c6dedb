"""Recording links: the template is plain fields in a web link, and data never becomes a script."""
from __future__ import annotations

import pytest

from callqa.config import ConfigError, _recording_url
from callqa.report import recording_link


@pytest.mark.parametrize("template", ["https://x/{storage_uri!r}", "https://x/{call_id:>50}", "{storage_uri!s}",
                                      "javascript:alert(1)//{call_id}", " JavaScript:x{call_id}",
                                      "data:text/html,{call_id}", "https://x/{caller}", "https://x/"])
def test_a_template_with_format_tricks_scripts_or_other_fields_is_refused(template):
    with pytest.raises(ConfigError, match="CALLQA_RECORDING_URL"):
        _recording_url(template)


def test_a_storage_uri_that_is_a_script_gives_no_link_and_fields_are_encoded():
    assert recording_link("{storage_uri}", {"storage_uri": "javascript:alert(1)"}) == ""
    assert recording_link("{storage_uri}", {"storage_uri": "\tDATA:text/html,x"}) == ""
    assert recording_link("{storage_uri}", {"storage_uri": "s3://bucket/a.wav"}) == "s3://bucket/a.wav"
    assert recording_link("https://play/{call_id}?r={recording_id}", {"call_id": "c 1&x", "recording_id": "r/1"}) \
        == "https://play/c%201%26x?r=r/1"
