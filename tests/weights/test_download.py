"""Named weights through a local HTTP mirror: progress, cache hits, bad hashes, cut connections."""

import hashlib
import http.server
import socket
import threading

import pytest
import torch

from maskrcnn.errors import CheckpointError
from maskrcnn.weights import read_weights
from maskrcnn.weights.download import cached_path, fetch
from maskrcnn.weights.registry import SOURCES, Source

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Mirror(http.server.ThreadingHTTPServer):
    """Serves `files` (URL path -> bytes); counts requests; `cut` sends half a file, then hangs up."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files, self.requests, self.cut = {}, 0, False


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests += 1
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.server.cut else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(monkeypatch, tmp_path):
    server = Mirror()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKRCNN_MIRROR", f"http://127.0.0.1:{server.server_port}/mirror")
    yield server
    server.shutdown()
    server.server_close()


def _source(data: bytes, algorithm="sha256", digits=64, name="w.pth") -> Source:
    digest = hashlib.new(algorithm, data).hexdigest()[:digits]
    return Source(f"test/{name}", "test", "maskrcnn_r18_fpn", "none",
                  f"https://weights.example.org/models/{name}", f"{algorithm}:{digest}")  # fmt: skip


def _cache_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())


def test_download_with_progress_then_cache_hit(mirror, tmp_path, capsys):
    mirror.files["/mirror/models/w.pth"] = PAYLOAD
    source = _source(PAYLOAD)
    path = fetch(source)
    assert path == cached_path(source) == tmp_path / "cache" / "test" / "w.pth"
    assert path.read_bytes() == PAYLOAD and mirror.requests == 1
    err = capsys.readouterr().err
    assert "w.pth" in err and "100%" in err and "1.05M" in err  # the progress bar
    assert fetch(source) == path and mirror.requests == 1  # no second request
    assert _cache_files(tmp_path) == ["w.pth"]


@pytest.mark.parametrize("algorithm,digits", [("sha256", 8), ("md5", 6)])
def test_published_hash_prefixes_are_checked(mirror, algorithm, digits):
    mirror.files["/mirror/models/w.pth"] = PAYLOAD
    assert fetch(_source(PAYLOAD, algorithm, digits), progress=False).read_bytes() == PAYLOAD


def test_wrong_hash_fails_naming_url_and_both_hashes_and_keeps_nothing(mirror, tmp_path):
    mirror.files["/mirror/models/w.pth"] = PAYLOAD
    source = _source(b"other bytes")
    with pytest.raises(CheckpointError) as err:
        fetch(source, progress=False)
    msg = str(err.value)
    url = f"http://127.0.0.1:{mirror.server_port}/mirror/models/w.pth"
    assert msg.startswith(f"{url}: sha256 mismatch")
    assert source.checksum.split(":")[1] in msg and hashlib.sha256(PAYLOAD).hexdigest() in msg
    assert _cache_files(tmp_path) == []


def test_cut_connection_leaves_no_file_and_the_next_call_succeeds(mirror, tmp_path):
    mirror.files["/mirror/models/w.pth"] = PAYLOAD
    source = _source(PAYLOAD)
    mirror.cut = True
    with pytest.raises(CheckpointError, match="was cut off"):
        fetch(source, progress=False)
    assert _cache_files(tmp_path) == []
    mirror.cut = False
    assert fetch(source, progress=False).read_bytes() == PAYLOAD


def test_no_server_gives_the_offline_error(monkeypatch, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASKRCNN_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MASKRCNN_MIRROR", f"http://127.0.0.1:{port}")
    source = _source(PAYLOAD)
    with pytest.raises(CheckpointError) as err:
        fetch(source, progress=False)
    msg = str(err.value)
    assert msg.startswith(f"cannot download http://127.0.0.1:{port}/models/w.pth (")
    assert f"put it at {tmp_path / 'cache' / 'test' / 'w.pth'}" in msg
    assert _cache_files(tmp_path) == []


def test_a_named_source_is_read_like_a_file(mirror, monkeypatch, tmp_path):
    state = {"conv1.weight": torch.randn(64, 3, 7, 7), "layer1.0.conv1.weight": torch.randn(64, 64, 3, 3),
             "fc.weight": torch.randn(10, 512)}  # a (very) partial ImageNet ResNet
    file = tmp_path / "resnet.pth"
    torch.save(state, file)
    data = file.read_bytes()
    mirror.files["/mirror/models/resnet.pth"] = data
    source = _source(data, name="resnet.pth")
    monkeypatch.setitem(SOURCES, source.name, source)
    loaded, config = read_weights("test/resnet.pth")
    assert config is None and set(loaded) == {"backbone.trunk.conv1.weight", "backbone.trunk.layer1.0.conv1.weight"}
    assert torch.equal(loaded["backbone.trunk.conv1.weight"], state["conv1.weight"])


def test_a_source_without_published_checksum_is_kept_with_a_warning(mirror):
    mirror.files["/mirror/models/w.pth"] = PAYLOAD
    source = Source("test/w.pth", "test", "maskrcnn_r18_fpn", "none", "https://weights.example.org/models/w.pth")
    with pytest.warns(UserWarning, match=f"no published checksum, kept unverified \\(sha256 {hashlib.sha256(PAYLOAD).hexdigest()}"):
        assert fetch(source, progress=False).read_bytes() == PAYLOAD
