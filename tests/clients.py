"""Client factories for tests: every client made is closed after the test."""

from __future__ import annotations

import threading
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


def run_in_threads(work: Callable[[int], None], count: int, timeout_s: float = 120.0) -> List[BaseException]:
    """Runs ``work(0)`` ... ``work(count - 1)`` on a thread each, waits for all, and
    returns what they raised (an assertion in a thread would otherwise be lost)."""
    errors: List[BaseException] = []

    def run(k: int) -> None:
        try:
            work(k)
        except BaseException as e:  # noqa: BLE001 - returned to the test
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not any(thread.is_alive() for thread in threads), f"threads still running after {timeout_s} s"
    return errors
