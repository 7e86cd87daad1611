"""Log redaction hides fields named as secrets, exactly; other fields are logged as they are."""

from __future__ import annotations

import pytest

from broker.logs import redact


@pytest.mark.parametrize("key", ["token", "api_key", "Authorization", "password", "xi-api-key", "auth_token"])
def test_secret_fields_are_hidden(key: str) -> None:
    assert redact(None, "info", {key: "s3cret", "event": "x"}) == {key: "***", "event": "x"}


@pytest.mark.parametrize("key", ["semantic_tokens", "tokens", "max_new_tokens", "token_count", "secretary"])
def test_fields_that_only_contain_a_secret_word_are_kept(key: str) -> None:
    assert redact(None, "info", {key: 412, "event": "bark_batch"}) == {key: 412, "event": "bark_batch"}
