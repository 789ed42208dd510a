"""Hostile requests to a real `llavacam serve` (a subprocess on the tiny models): web pages, files, odd JSON.

Each case asserts the exact refusal (status and OpenAI-style error code) and that the server still answers.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.hostile.serving import ServeProcess, run_cli

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def served(tiny_models):
    server = ServeProcess("--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj), "--n-ctx", "2048")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("allowed-images")
    Image.new("RGB", (32, 32), (10, 200, 10)).save(folder / "green.png")
    return folder


@pytest.fixture(scope="module")
def served_open(tiny_models, image_dir):
    """A server the operator opened up: a token, an extra Host name, one allowed web origin, an image folder."""
    server = ServeProcess("--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj), "--token", TOKEN,
                          "--allowed-host", "llavacam.test", "--cors-origin", "http://app.example:3000",
                          "--image-dir", str(image_dir))  # fmt: skip
    server.auth_headers = {"authorization": f"Bearer {TOKEN}"}
    yield server
    server.stop()


def png_data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def ask(text: str = "Hi", image_url: str | None = None, **extra) -> str:
    content: object = text
    if image_url is not None:
        content = [{"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": text}]
    return json.dumps({"messages": [{"role": "user", "content": content}], "max_tokens": 2, **extra})


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["message"]
    return error


# --- web pages: DNS rebinding and cross-origin requests ---------------------------------------------------------------


def test_dns_rebinding_host_is_refused(served):
    error = error_of(served.post(ask(), headers={"host": f"evil.example:{served.port}"}), 403)
    assert error["code"] == "host_not_allowed"
    assert "--allowed-host" in error["message"]
    assert served.alive()


def test_dns_rebinding_get_of_models_is_refused(served):
    response = httpx.get(served.url + "/v1/models", headers={"host": "attacker.example"})
    assert error_of(response, 403)["code"] == "host_not_allowed"


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "LOCALHOST", "[::1]", "127.0.0.2", "app.localhost",
                                  "localhost."])
def test_localhost_forms_are_accepted(served, host):
    response = httpx.get(served.url + "/health", headers={"host": f"{host}:{served.port}"})
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_cross_origin_post_is_refused(served):
    response = served.post(ask(), headers={"origin": "https://evil.example"})
    error = error_of(response, 403)
    assert error["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert served.alive()


def test_text_plain_post_is_refused(served):
    error = error_of(served.post(ask(), headers={"content-type": "text/plain;charset=UTF-8"}), 415)
    assert error["code"] == "unsupported_media_type"
    assert served.alive()


def test_form_post_is_refused(served):
    error = error_of(served.post(ask(), headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    assert error["code"] == "unsupported_media_type"


def test_null_origin_is_refused(served):
    assert error_of(served.post(ask(), headers={"origin": "null"}), 403)["code"] == "origin_not_allowed"


def test_allowed_cors_origin_gets_its_preflight_and_answer(served_open):
    preflight = httpx.options(served_open.url + "/v1/chat/completions", headers={
        "origin": "http://app.example:3000", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type"})  # fmt: skip
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://app.example:3000"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    reply = served_open.post(ask(), headers={"origin": "http://app.example:3000", **served_open.auth_headers})
    assert reply.status_code == 200
    assert reply.headers["access-control-allow-origin"] == "http://app.example:3000"


def test_other_origin_is_refused_even_with_cors_configured(served_open):
    preflight = httpx.options(served_open.url + "/v1/chat/completions", headers={
        "origin": "http://evil.example", "access-control-request-method": "POST"})  # fmt: skip
    assert error_of(preflight, 403)["code"] == "origin_not_allowed"


def test_allowed_host_name_is_accepted(served_open):
    response = httpx.get(served_open.url + "/v1/models", headers={"host": "llavacam.test", **served_open.auth_headers})
    assert response.status_code == 200
    assert response.json()["object"] == "list"


def test_bearer_scheme_is_case_insensitive(served_open):
    response = httpx.get(served_open.url + "/v1/models", headers={"authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200
    wrong = httpx.get(served_open.url + "/v1/models", headers={"authorization": f"bearer {TOKEN.upper()}"})
    assert error_of(wrong, 401)["code"] == "invalid_api_key"


# --- file:// image URLs --------------------------------------------------------------------------------------------


def test_file_url_is_refused_without_an_image_dir(served, image_dir):
    error = error_of(served.post(ask("Colour?", (image_dir / "green.png").as_uri())), 400)
    assert error["code"] == "file_urls_disabled"
    assert "data: URI" in error["message"]


def test_file_url_outside_the_image_dir_answers_the_same_whether_the_file_exists(served_open, tmp_path):
    existing = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(existing)
    answers = []
    for path in (existing, tmp_path / "missing.png", Path("/etc/shadow")):
        error = error_of(served_open.post(ask("x", path.as_uri()), headers=served_open.auth_headers), 400)
        answers.append((error["code"], error["message"]))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == "file_url_refused"


def test_file_url_escaping_the_image_dir_with_dot_dot_is_refused(served_open, image_dir):
    url = image_dir.as_uri() + "/../" + image_dir.name + "/../../etc/passwd"
    error = error_of(served_open.post(ask("x", url), headers=served_open.auth_headers), 400)
    assert error["code"] == "file_url_refused"


def test_file_url_naming_another_host_is_refused(served_open, image_dir):
    url = "file://otherhost" + str(image_dir / "green.png")
    error = error_of(served_open.post(ask("x", url), headers=served_open.auth_headers), 400)
    assert error["code"] == "file_url_refused"


def test_file_url_inside_the_image_dir_is_answered(served_open, image_dir):
    reply = served_open.post(ask("Colour?", (image_dir / "green.png").as_uri()), headers=served_open.auth_headers)
    assert reply.status_code == 200, reply.text
    assert reply.json()["usage"]["prompt_tokens"] > 0


# --- images too large for the queue ---------------------------------------------------------------------------------


def test_one_image_over_the_per_image_pixel_cap_is_refused(served):
    huge = png_data_uri(Image.new("1", (6000, 6000)))  # 36 MP in a few KB
    error = error_of(served.post(ask("x", huge)), 400)
    assert error["code"] == "image_too_large"
    assert "6000x6000" in error["message"]
    assert served.alive()


def test_images_over_the_per_request_pixel_cap_are_refused(served):
    big = png_data_uri(Image.new("1", (4500, 4500)))  # 20 MP each: each allowed, three together are not
    messages = []
    for _ in range(3):
        messages += [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": big}},
                                                  {"type": "text", "text": "x"}]},
                     {"role": "assistant", "content": "ok"}]  # fmt: skip
    messages.pop()
    error = error_of(served.post(json.dumps({"messages": messages, "max_tokens": 2})), 400)
    assert error["code"] == "image_too_large"
    assert "together" in error["message"]


def test_image_header_making_pillow_raise_value_error_is_a_400(served):
    ppm = "data:image/x-portable-pixmap;base64," + base64.b64encode(b"P6 1 1 0\n\x00\x00\x00").decode()
    error = error_of(served.post(ask("x", ppm)), 400)
    assert error["code"] == "invalid_image"
    assert served.alive()


# --- odd JSON and values --------------------------------------------------------------------------------------------

BAD_BODIES = {
    "nested-100k-deep": ('{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid_json"),
    "max-tokens-infinity": ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": Infinity}',
                            "invalid_json"),
    "max-tokens-1e400": ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e400}', "invalid_json"),
    "seed-infinity": ('{"messages": [{"role": "user", "content": "hi"}], "seed": -Infinity}', "invalid_json"),
    "seed-1e400": ('{"messages": [{"role": "user", "content": "hi"}], "seed": 1e400}', "invalid_json"),
    "temperature-nan": ('{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "invalid_json"),
    "lone-surrogate": ('{"messages": [{"role": "user", "content": "hi \\ud800 there"}]}', "invalid_json"),
    "model-as-list": ('{"model": ["a"], "messages": [{"role": "user", "content": "hi"}]}', None),
    "model-as-object": ('{"model": {"a": 1}, "messages": [{"role": "user", "content": "hi"}]}', None),
    "max-tokens-zero": ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', None),
    "max-tokens-string": ('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}', None),
    "seed-huge-integer": ('{"messages": [{"role": "user", "content": "hi"}], "seed": ' + "9" * 400 + "}", None),
    "temperature-string": ('{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', None),
    "body-is-a-list": ("[1, 2]", "invalid_json"),
    "body-not-utf8": (b'{"messages": "\xff\xfe"}', "invalid_json"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_odd_json_gets_an_openai_style_400(served, case):
    body, code = BAD_BODIES[case]
    error = error_of(served.post(body), 400)
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert served.alive()


def test_max_tokens_zero_names_the_parameter(served):
    error = error_of(served.post(ask(max_tokens=0)), 400)
    assert error["param"] == "max_tokens"
    assert "from 1 to" in error["message"]


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nope", 404), ("GET", "/v1/chat/completions", 405),
                                                        ("DELETE", "/v1/models", 405), ("GET", "/v1", 404)])
def test_unknown_routes_and_methods_get_json_errors(served, method, path, status):
    response = httpx.request(method, served.url + path)
    error = error_of(response, status)
    assert error["code"] in ("not_found", "method_not_allowed")


def test_too_many_messages_are_refused_before_any_work(served):
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}] * 1000
    body = json.dumps({"messages": [*turns, {"role": "user", "content": "last"}], "max_tokens": 2})
    error = error_of(served.post(body), 400)
    assert error["code"] == "too_many_messages"
    assert served.alive()


def test_long_conversation_within_the_cap_is_fitted_and_answered(served):
    turns = []
    for i in range(255):
        turns += [{"role": "user", "content": f"question {i} " + "words " * 20},
                  {"role": "assistant", "content": "answer " * 10}]  # fmt: skip
    body = json.dumps({"messages": [*turns, {"role": "user", "content": "last"}], "max_tokens": 2})
    reply = served.post(body, timeout=120)
    assert reply.status_code == 200, reply.text
    assert reply.json()["timings"]["dropped_turns"] > 200


def test_port_in_use_is_one_clear_line_before_serving(served, tiny_models):
    result = run_cli("serve", "--model", str(tiny_models.text), "--port", str(served.port))
    assert result.returncode == 2
    assert "serving" not in result.stdout
    assert result.stderr.strip().splitlines() == [
        f"llavacam: error: port {served.port} on 127.0.0.1 is already in use (another llavacam serve?): choose "
        "another with --port N"
    ]
    assert served.alive()


def test_machine_names_and_local_addresses_are_accepted_only_beyond_loopback():
    """The phone and a remote window reach a 0.0.0.0 server by this machine's name or address; a loopback-only
    server accepts neither, and no server accepts an address this machine does not own."""
    import socket

    from app.server.guard import HostPolicy

    hostname = socket.gethostname().lower()
    wide, loopback, one_address = HostPolicy("0.0.0.0"), HostPolicy("127.0.0.1"), HostPolicy("10.99.99.99")
    assert wide.host_allowed(hostname)
    assert wide.host_allowed(f"{hostname.split('.')[0]}.local")
    assert not loopback.host_allowed(hostname)
    assert not wide.host_allowed("8.8.8.8")
    assert not wide.host_allowed("evil.example")
    assert one_address.host_allowed("10.99.99.99")
    assert not one_address.host_allowed("10.99.99.98")
    assert wide.host_allowed("127.0.0.1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only asks which local address would be used
        own = probe.getsockname()[0]
    assert wide.host_allowed(own)
    assert not loopback.host_allowed(own)
