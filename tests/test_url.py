"""URL rules: PyTriton's table (spec 1.1), with https and IPv6 fixed."""

import pytest

from tritonfast._url import TritonUrl
from tritonfast.exceptions import PyTritonClientInvalidUrlError, PyTritonClientValueError


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("localhost", "http", "localhost", 8000),
        ("localhost:8001", "http", "localhost", 8001),  # the port never changes the scheme
        ("http://h/path", "http", "h", 8000),  # path dropped
        ("http://user:pw@h:1", "http", "h", 1),  # user info dropped
        ("127.0.0.1:9000", "http", "127.0.0.1", 9000),
        ("HTTP://Host:1234", "http", "host", 1234),  # scheme and host lower-cased
        ("https://secure.example", "https", "secure.example", 443),
        ("https://h:8443", "https", "h", 8443),
        ("http://[::1]:8000", "http", "::1", 8000),
    ],
)
def test_parses_like_pytriton(url, scheme, host, port):
    parsed = TritonUrl.from_url(url)
    assert (parsed.scheme, parsed.hostname, parsed.port) == (scheme, host, port)


def test_ipv6_keeps_brackets():
    # PyTriton loses them ("::1:8000"), which no client can connect to.
    assert TritonUrl.from_url("http://[::1]:8000").authority == "[::1]:8000"
    assert TritonUrl.from_url("http://[::1]:8000").with_scheme == "http://[::1]:8000"


@pytest.mark.parametrize("url", ["grpc:localhost", "localhost:abc", "ftp://x", "", "http://"])
def test_invalid_urls(url):
    with pytest.raises(PyTritonClientInvalidUrlError, match="Invalid url"):
        TritonUrl.from_url(url)


def test_not_a_string():
    with pytest.raises(PyTritonClientInvalidUrlError, match=r"Invalid url 8000\. Url must be a string\."):
        TritonUrl.from_url(8000)


def test_grpc_is_refused_with_a_reason():
    with pytest.raises(PyTritonClientInvalidUrlError, match="grpc:// is not supported by tritonfast yet"):
        TritonUrl.from_url("grpc://localhost:8001")


def test_invalid_url_is_a_value_error():
    assert issubclass(PyTritonClientInvalidUrlError, PyTritonClientValueError)
    assert issubclass(PyTritonClientInvalidUrlError, ValueError)
