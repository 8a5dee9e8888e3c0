"""The exported names and the exception tree."""

import pickle

import pytest

import tritonfast
from tritonfast import exceptions


def test_exported_names():
    assert tritonfast.__all__ == sorted(tritonfast.__all__)
    assert set(tritonfast.__all__) == {
        "FuturesModelClient",
        "ModelClient",
        "TritonModelConfig",
        "__version__",
        "exceptions",
        "utils",
    }


def test_exception_names_match_pytriton():
    pytriton_exceptions = pytest.importorskip("pytriton.client.exceptions")
    theirs = {n for n in dir(pytriton_exceptions) if n.startswith("PyTritonClient")}
    ours = {n for n in exceptions.__all__ if n.startswith("PyTritonClient")}
    assert theirs <= ours
    for name in theirs:
        their_bases = {b.__name__ for b in getattr(pytriton_exceptions, name).__mro__}
        our_bases = {b.__name__ for b in getattr(exceptions, name).__mro__}
        assert their_bases <= our_bases, name


@pytest.mark.parametrize("name", exceptions.__all__)
def test_exceptions_carry_message_and_pickle(name):
    cls = getattr(exceptions, name)
    e = cls("what went wrong")
    assert str(e) == e.message == "what went wrong"
    assert e.args == ("what went wrong",)
    assert isinstance(e, exceptions.PyTritonClientError)
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is cls and copy.message == "what went wrong"


def test_codec_errors_are_value_errors():
    assert issubclass(exceptions.EncodeError, ValueError)
    assert issubclass(exceptions.DecodeError, ValueError)
    assert issubclass(exceptions.ProtocolError, exceptions.DecodeError)


def test_connection_errors_are_timeouts_as_in_pytriton():
    assert issubclass(exceptions.PyTritonClientConnectionError, exceptions.PyTritonClientTimeoutError)
