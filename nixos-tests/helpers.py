# Helpers shared by the VM tests' scripts (prepended to each testScript).
import time
from typing import Callable


def eventually(check: Callable[[], bool], timeout: int = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{check.__name__}: not within {timeout} s"
        time.sleep(2)


def kafka_table(out: str) -> list[dict[str, str]]:
    # The rows of a kafka-consumer-groups.sh table, keyed by its header.
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in out.splitlines():
        cols = line.split()
        if cols[:1] == ["GROUP"]:
            header = cols
        elif header and len(cols) == len(header):
            rows.append(dict(zip(header, cols)))
    return rows
