"""A password or key written inside a URL option is blanked wherever aa shows or records the URL."""

from aa_core.credentials import blank_credentials, blanked


def test_user_information_and_secret_query_values_are_blanked_and_the_rest_kept():
    assert blank_credentials("https://user:pa55@proxy.example.com:8443/v1") == "https://***@proxy.example.com:8443/v1"
    assert blank_credentials("https://sk-token@host/v1") == "https://***@host/v1"  # a key as the user name
    assert blank_credentials("http://u:p@ss@host/x") == "http://***@host/x"  # a raw @ inside the password
    url = "https://h/v1beta/models/m:generateContent?key=AIza123&api-version=2024-02-01&access_token=t0k"
    assert blank_credentials(url) == "https://h/v1beta/models/m:generateContent?key=***&api-version=2024-02-01&access_token=***"
    said = "failed at https://a:b@h/v1 (see http://127.0.0.1:8000/v1)"
    assert blank_credentials(said) == "failed at https://***@h/v1 (see http://127.0.0.1:8000/v1)"
    for plain in ("http://127.0.0.1:8000/v1", "openai/gpt-4o-mini", "a user@example.com wrote", "mailto:a@b.c"):
        assert blank_credentials(plain) == plain


def test_a_config_record_is_blanked_throughout():
    record = {"seed": 0, "prompts": {"api_base": "https://u:p@h/v1", "synonyms": {"bike": ["http://k:s@x"]}}, "none": None}
    assert blanked(record) == {"seed": 0, "prompts": {"api_base": "https://***@h/v1", "synonyms": {"bike": ["http://***@x"]}}, "none": None}
