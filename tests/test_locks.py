"""The one-writer-per-folder lock, with real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from musicrep.errors import FolderLockedError
from musicrep.locks import folder_lock, lock_path

HOLD = """
import sys, time
from pathlib import Path
from musicrep.locks import folder_lock
with folder_lock(sys.argv[1]):
    Path(sys.argv[2]).write_text("held")
    time.sleep(60)
"""


def _holder(folder: Path, flag: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(flag)])
    deadline = time.time() + 30
    while not flag.exists():
        assert proc.poll() is None and time.time() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    folder = tmp_path / "runs" / "artist"
    proc = _holder(folder, tmp_path / "flag")
    try:
        start = time.time()
        with pytest.raises(FolderLockedError, match=rf"artist is being written by PID {proc.pid} \(.*-c"):
            with folder_lock(folder):
                pass
        assert time.time() - start < 1.0  # fails at once, does not wait
        with folder_lock(tmp_path / "runs" / "album"):  # another folder is free
            pass
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    folder = tmp_path / "store"
    proc = _holder(folder, tmp_path / "flag")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with folder_lock(folder):
        assert lock_path(folder).read_text().split("\n")[0] == str(os.getpid())


def test_reentrant_in_one_process_and_outside_the_folder(tmp_path):
    folder = tmp_path / "work"
    with folder_lock(folder):
        with folder_lock(folder):  # a stage locking the job's own folder
            pass
        with folder_lock(tmp_path / "work" / ".." / "work"):  # the same folder, spelled otherwise
            pass
    assert not folder.exists()  # the lock does not create the folder, nor live inside it
    assert lock_path(folder) == tmp_path / ".work.lock"
    with folder_lock(folder):  # released after the outermost block
        pass


def test_the_sweep_and_the_main_job_lock_their_folders(tmp_path):
    from musicrep.pipeline import profile_config, run_pipeline
    from musicrep.evaluation.sweep import run_sweep

    for name, job in [
        ("sweep", lambda folder: run_sweep(kind="margin_artist", values=[0.1], store=tmp_path / "store",
                                           out_dir=folder)),
        ("work", lambda folder: run_pipeline(folder, config=profile_config("quick"))),
    ]:
        folder = tmp_path / name
        proc = _holder(folder, tmp_path / f"{name}.flag")
        try:
            with pytest.raises(FolderLockedError, match=f"PID {proc.pid}"):
                job(folder)
        finally:
            proc.kill()
            proc.wait()
        assert not folder.exists()  # refused before writing anything
