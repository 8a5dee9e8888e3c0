"""``python -m tritonfast.perf ...``: the ``tritonfast perf`` command."""

import sys

from tritonfast.perf.cli import perf_main

if __name__ == "__main__":
    sys.exit(perf_main(prog="python -m tritonfast.perf"))
