"""Upload limits hold where Gradio accepts the bytes (raw HTTP, no client-side checks), and a
read-only app accepts no upload at all."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port, wait_http


@pytest.fixture(scope="module")
def read_only_url(small_store: Path) -> Iterator[str]:
    from ui.app import build_app, launch

    port = free_port()
    app = launch(build_app(str(small_store), llm="extractive", allow_upload=False), "127.0.0.1", port, block=False)
    url = f"http://127.0.0.1:{port}/"
    wait_http(url)
    yield url
    app.close()


def post_file(url: str, path: str, size: int) -> httpx.Response:
    return httpx.post(url + path, files=[("files", ("big.txt", b"a" * size, "text/plain"))], timeout=60)


def declared_only(url: str, length: int) -> int:
    """Status for an upload that declares ``length`` bytes and sends only a few."""
    conn = http.client.HTTPConnection(httpx.URL(url).host, httpx.URL(url).port, timeout=30)
    conn.putrequest("POST", "/gradio_api/upload")
    conn.putheader("Content-Type", "multipart/form-data; boundary=xyz")
    conn.putheader("Content-Length", str(length))
    conn.endheaders(b"--xyz\r\n")
    try:
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_file_over_the_limit_is_refused_by_the_server(app_url: str) -> None:
    from ui.app import MAX_UPLOAD_BYTES

    response = post_file(app_url, "gradio_api/upload", MAX_UPLOAD_BYTES + 1024)
    assert response.status_code == 413, response.text[:200]
    assert post_file(app_url, "gradio_api/upload", 1000).status_code == 200  # small files still pass


def test_a_request_over_the_limit_is_refused_before_its_body(app_url: str) -> None:
    from ui.app import MAX_REQUEST_BYTES

    assert declared_only(app_url, 300 * 2**20) == 413 and MAX_REQUEST_BYTES < 300 * 2**20
    chunked = httpx.post(app_url + "gradio_api/upload", content=iter([b"--xyz\r\n"]), timeout=30,
                         headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert chunked.status_code == 411  # no declared size, no upload


@pytest.mark.parametrize("path", ["gradio_api/upload", "upload", "gradio_api/upload?upload_id=x", "gradio_api/component_server"])
def test_read_only_accepts_no_upload(read_only_url: str, path: str) -> None:
    response = post_file(read_only_url, path, 1000)
    assert response.status_code in (403, 404, 405), (path, response.status_code, response.text[:200])
    assert response.status_code == 403 or not path.startswith("gradio_api/upload")


def test_read_only_still_answers(read_only_url: str, small_store: Path) -> None:
    from tests.e2e.test_chat_app import _text, ask

    assert "dazzle" in _text(ask(read_only_url, small_store, "What is a group of zebras called?")[-1][-2])


def test_a_chunked_body_with_a_small_declared_length_is_refused(app_url: str) -> None:
    """Content-Length: 10 plus Transfer-Encoding: chunked: the server would read the chunks, as many
    as come (a 144 MB request got through), so the declared size means nothing and is refused."""
    import socket

    url = httpx.URL(app_url)
    body = b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n\r\n' + b"a" * 4096 + b"\r\n--xyz--\r\n"
    head = ("POST /gradio_api/upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
            "Content-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    with socket.create_connection((url.host, url.port), timeout=30) as conn:
        conn.sendall(head + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        status = conn.recv(200).split(b"\r\n", 1)[0]
    assert status.split()[1] == b"411", status


@pytest.mark.parametrize("path", ["gradio_api/queue/join", "gradio_api/run/ask"])
def test_a_huge_body_to_another_route_is_refused_before_it_is_read(app_url: str, path: str) -> None:
    """Gradio reads JSON bodies into memory: a 600 MB POST to /gradio_api/queue/join took the
    server from 0.6 to 2.9 GB. A declared size over the limit is refused before the body."""
    import socket

    url = httpx.URL(app_url)
    head = (f"POST /{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {600 * 2**20}\r\n\r\n").encode()
    with socket.create_connection((url.host, url.port), timeout=10) as conn:
        conn.sendall(head + b'{"data": ["')
        status = conn.recv(200).split(b"\r\n", 1)[0]
    assert status.split()[1] == b"413", status
    assert httpx.get(app_url + "config", timeout=30).status_code == 200
