"""The runtime record of a supervisor's processes and ending them when a supervisor returns
(``bridge.sip.orphans``): real processes, no pool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bridge.sip.orphans import (
    Child,
    end_orphans,
    read_record,
    record_path,
    start_time,
    started_at,
    write_record,
)

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
    "print('ready', flush=True); time.sleep(60)"  # fmt: skip


def test_start_time_reads_field_22_even_when_the_name_has_spaces_and_parentheses() -> None:
    fields = ["S", *map(str, range(4, 22)), "987654", "0"]
    assert start_time(f"1234 (a) b (c)) {' '.join(fields)}") == 987654
    assert started_at(999_999_999) is None  # no such process


def test_record_keeps_live_processes_only_and_a_bad_record_is_no_record(tmp_path: Path) -> None:
    path = record_path(tmp_path, "node/a b")
    assert path.parent == tmp_path and "/" not in path.name and " " not in path.name
    with subprocess.Popen(["sleep", "30"]) as child:
        write_record(path, "seg", [("worker", child.pid), ("mixer", 999_999_999)])
        segment, children = read_record(path)
        assert segment == "seg"
        assert children == [Child("worker", child.pid, started_at(child.pid) or -1)]
        child.kill()
    path.write_text("{not json")
    assert read_record(path) == ("", [])
    assert read_record(tmp_path / "none.json") == ("", [])


def test_end_orphans_terms_then_kills_and_spares_a_reused_pid(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    polite = subprocess.Popen(["sleep", "60"])
    stubborn = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE)
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == b"ready"
        write_record(path, "", [("worker", polite.pid), ("mixer", stubborn.pid)])
        # the bystander has a recorded pid but another start time: a pid the kernel reused
        data = json.loads(path.read_text())
        data["children"].append({"role": "worker", "pid": bystander.pid, "started": 1})
        path.write_text(json.dumps(data))
        ended = end_orphans(path, timeout=1.0)
        assert {c.pid for c in ended} == {polite.pid, stubborn.pid}
        assert polite.wait(5) == -15  # SIGTERM
        assert stubborn.wait(5) == -9  # ignored SIGTERM: SIGKILL after the timeout
        assert bystander.poll() is None, "a process that only shares a recorded pid was hit"
        assert not path.exists()
    finally:
        for proc in (polite, stubborn, bystander):
            proc.kill()
            proc.wait()
