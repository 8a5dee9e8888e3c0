"""Client factories for tests: every client made is closed after the test."""

from __future__ import annotations

from typing import Any, Callable, Iterator, List


def closing_clients(cls: Callable[..., Any], url: str, **defaults: Any) -> Iterator[Callable[..., Any]]:
    """Body of a fixture yielding ``make(model, *args, **kwargs)`` -> ``cls(url, model, ...)``;
    ``url=`` and ``defaults`` may be overridden per call."""
    clients: List[Any] = []

    def make(model_name: str, *args: Any, **kwargs: Any) -> Any:
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        client = cls(kwargs.pop("url", url), model_name, *args, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
