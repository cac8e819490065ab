"""Nothing lost, nothing let in: GLIDE's checkpoints are downloaded whole and checked or not kept
(against a real HTTP server on 127.0.0.1), and read by weights-only unpickling, which refuses a
pickled object instead of running it."""

import hashlib
import http.server
import os
import threading

import pytest
import torch
from conftest import aa

from aa_core.errors import AAError

FIX = "retry, or download it by hand into a folder and set generator.model to that folder"


class Routes(http.server.BaseHTTPRequestHandler):
    """GET PATH answers what ``self.server.routes[PATH]`` says: (status, body, announced length)."""

    def do_GET(self):
        status, body, length = self.server.routes[self.path]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True  # a short body then ends the transfer, as a dropped connection does

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


BODY = os.urandom(3 * (1 << 20) + 123)  # more than one chunk
SUM = hashlib.sha256(BODY).hexdigest()


def test_a_complete_download_with_the_pinned_sum_is_cached_under_its_name(server, tmp_path):
    from aa_glide.download import fetch_verified

    httpd, url = server
    httpd.routes["/base.pt"] = (200, BODY, None)
    got = fetch_verified(f"{url}/base.pt", tmp_path / "cache" / "base.pt", SUM, len(BODY), fix=FIX)
    assert got == SUM
    assert os.listdir(tmp_path / "cache") == ["base.pt"] and (tmp_path / "cache" / "base.pt").read_bytes() == BODY


@pytest.mark.parametrize("status, reason", [(404, "Not Found"), (500, "Internal Server Error")])
def test_an_http_error_is_one_line_and_leaves_the_cache_empty(server, tmp_path, status, reason):
    from aa_glide.download import fetch_verified

    httpd, url = server
    httpd.routes["/base.pt"] = (status, b"<html>an error page, not a checkpoint</html>", None)
    with pytest.raises(AAError) as caught:
        fetch_verified(f"{url}/base.pt", tmp_path / "base.pt", SUM, fix=FIX)
    assert str(caught.value) == f"cannot download {url}/base.pt (HTTP {status} {reason}); nothing was cached: {FIX}"
    assert os.listdir(tmp_path) == []


def test_a_body_with_another_sum_or_size_is_refused_and_nothing_is_cached(server, tmp_path):
    from aa_glide.download import fetch_verified

    httpd, url = server
    tampered = BODY[:-1] + bytes([BODY[-1] ^ 1])
    httpd.routes["/base.pt"] = (200, tampered, None)
    with pytest.raises(AAError) as caught:
        fetch_verified(f"{url}/base.pt", tmp_path / "base.pt", SUM, len(BODY), fix=FIX)
    other = hashlib.sha256(tampered).hexdigest()
    assert str(caught.value) == f"base.pt from {url}/base.pt has SHA-256 {other}, not the pinned {SUM}; nothing was cached: {FIX}"
    assert os.listdir(tmp_path) == []
    httpd.routes["/upsample.pt"] = (200, BODY + b"!", None)  # no sum pinned, a size pinned
    with pytest.raises(AAError) as caught:
        fetch_verified(f"{url}/upsample.pt", tmp_path / "upsample.pt", None, len(BODY), fix=FIX)
    assert str(caught.value) == f"upsample.pt from {url}/upsample.pt is {len(BODY) + 1} bytes, not the pinned {len(BODY)}; " \
                                f"nothing was cached: {FIX}"  # fmt: skip
    assert os.listdir(tmp_path) == []


def test_a_transfer_cut_short_is_not_cached_even_without_a_pinned_sum(server, tmp_path):
    from aa_glide.download import fetch_verified

    httpd, url = server
    httpd.routes["/base.pt"] = (200, BODY[:1000], len(BODY))  # announces the whole file, sends 1000 bytes
    with pytest.raises(AAError) as caught:
        fetch_verified(f"{url}/base.pt", tmp_path / "base.pt", None, None, fix=FIX)
    assert str(caught.value) == f"the download of {url}/base.pt ended after 1000 of {len(BODY)} bytes; nothing was cached: {FIX}"
    assert os.listdir(tmp_path) == []


def test_the_generator_replaces_a_cached_error_page_with_the_pinned_checkpoint(server, tmp_path, monkeypatch):
    """GLIDE's own downloader could have kept a 404 page as base.pt: it fails the pinned sum, and a
    checked download takes its place; the next load uses the cache without a request."""
    from aa_glide import checkpoints
    from aa_glide.checkpoints import Checkpoints, Released

    httpd, url = server
    state = {"weight": torch.arange(6.0).view(2, 3)}
    torch.save(state, tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    httpd.routes["/base.pt"] = (200, good, None)
    monkeypatch.setitem(checkpoints.RELEASED, "base", Released(f"{url}/base.pt", hashlib.sha256(good).hexdigest(), len(good)))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "base.pt").write_bytes(b"<html>404</html>")
    loaded = Checkpoints(None, cache).state("base")
    assert torch.equal(loaded["weight"], state["weight"]) and os.listdir(cache) == ["base.pt"]
    httpd.routes.clear()  # any request now fails
    assert torch.equal(Checkpoints(None, cache).state("base")["weight"], state["weight"])


class OpensAFile:
    """Unpickled, it would call open(path, "w"): proof that unpickling ran code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    from aa_glide.checkpoints import load_tensors

    marker = tmp_path / "ran"
    torch.save({"weight": torch.zeros(2), "payload": OpensAFile(marker)}, tmp_path / "base.pt")
    with pytest.raises(AAError) as caught:
        load_tensors(tmp_path / "base.pt", "save the model's state_dict() alone as base.pt")
    message = str(caught.value)
    assert "\n" not in message and not marker.exists()
    assert message.startswith(f"{tmp_path / 'base.pt'} is not a checkpoint of tensors alone, and weights-only loading refused it (")
    assert "io.open" in message and message.endswith("); save the model's state_dict() alone as base.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")  # tensors, but no state dict
    with pytest.raises(AAError, match=r"list.pt holds a list, not a state dict of tensors; fix$"):
        load_tensors(tmp_path / "list.pt", "fix")


def test_aa_run_with_a_glide_folder_holding_a_pickled_object_is_one_line(tmp_path, tiny_config, glide_model):
    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "ran"
    state = torch.load(glide_model / "base.pt", weights_only=True)
    torch.save({**state, "payload": OpensAFile(marker)}, folder / "base.pt")
    (folder / "base.json").write_text((glide_model / "base.json").read_text())
    proc = aa("run", "--config", tiny_config, "--out", tmp_path / "run", "--until", "generate", "--generator", "glide",
              "--set", f"generator.model={folder}", "--set", "generator.upsample=false")  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and not marker.exists()
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {folder / 'base.pt'} is not a checkpoint of tensors alone, and weights-only loading refused it (")
    assert last.endswith("); save the model's state_dict() alone as base.pt")
