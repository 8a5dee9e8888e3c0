"""Server URLs, parsed by PyTriton's rules with two fixes: ``https://`` is
supported, and IPv6 literals keep their brackets."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse

from tritonfast.exceptions import PyTritonClientInvalidUrlError

DEFAULT_PORTS = {"http": 8000, "https": 443, "grpc": 8001}
# Whatever stands before "://" is meant as a scheme, valid (RFC 3986) or not:
# urllib leaves "invalid_scheme://host" unparsed, which would read as no host.
_SCHEME = re.compile(r"^([^:/?#\[\]@]*)://")


@dataclasses.dataclass(frozen=True)
class TritonUrl:
    scheme: str
    hostname: str
    port: int

    @property
    def authority(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"

    @property
    def with_scheme(self) -> str:
        return f"{self.scheme}://{self.authority}"

    @property
    def without_scheme(self) -> str:
        return self.authority

    @classmethod
    def from_url(cls, url: str) -> "TritonUrl":
        """Parses ``[scheme://]host[:port][/path]``; the scheme defaults to http.

        As in PyTriton, the path and any user info are dropped, the hostname is
        lower-cased, and the port never changes the scheme.
        """
        if not isinstance(url, str):
            raise PyTritonClientInvalidUrlError(f"Invalid url {url}. Url must be a string.")
        given = _SCHEME.match(url)
        if given is not None and given.group(1).lower() not in DEFAULT_PORTS:
            raise PyTritonClientInvalidUrlError(
                f"Invalid url {url}: scheme {given.group(1).lower()!r} is not supported; use http:// or https://"
            )
        try:
            parsed = urllib.parse.urlparse(url)
            if "://" in url and not parsed.netloc:
                raise ValueError("no host name")  # PyTriton takes "grpc://" as host "grpc"
            if not parsed.scheme or not parsed.netloc:
                parsed = urllib.parse.urlparse(f"http://{url}")
            scheme = parsed.scheme.lower()
            port = parsed.port
            hostname = parsed.hostname
        except ValueError as e:
            raise PyTritonClientInvalidUrlError(f"Invalid url {url}: {e}") from e
        if scheme == "grpc":
            raise PyTritonClientInvalidUrlError(
                f"Invalid url {url}: grpc:// is not supported by tritonfast yet; "
                "use the server's HTTP endpoint (http://host:8000)"
            )
        if scheme not in ("http", "https"):
            raise PyTritonClientInvalidUrlError(
                f"Invalid url {url}: scheme {scheme!r} is not supported; use http:// or https://"
            )
        if not hostname:
            raise PyTritonClientInvalidUrlError(f"Invalid url {url}: no host name")
        return cls(scheme, hostname, port if port is not None else DEFAULT_PORTS[scheme])
