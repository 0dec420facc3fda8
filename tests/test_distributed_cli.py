"""`autoencoder-toolkit train --nproc 2`: one run directory, resume, divergence, a dying process."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "autoencoder_toolkit", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_two_processes_write_one_run_directory_and_resume(tmp_path):
    run = tmp_path / "run"
    p = cli("train", "--nproc", "2", "--epochs", "2", "--hidden", "32", "--latent-dim", "2", "--out", str(run),
            "--quiet")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == str(run)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run"]  # rank 1 wrote nothing of its own
    for name in ("config.json", "metrics.csv", "evaluation.json", "summary.txt", "checkpoint/model.safetensors",
                 "checkpoint/optimizer.safetensors", "checkpoint/state.json", "figures/loss.png",
                 "figures/mutual_info.png", "figures/latent.png"):
        assert (run / name).is_file(), name
    with open(run / "figures" / "loss.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    r = rows(run)
    # digits: 1438 training samples, a global batch of 2 × 64 → 11 steps per epoch
    assert [int(x["epoch"]) for x in r] == [1, 2] and [int(x["step"]) for x in r] == [11, 22]
    p = cli("train", "--nproc", "2", "--resume", str(run), "--epochs", "3", "--quiet")
    assert p.returncode == 0, p.stderr
    assert [int(x["step"]) for x in rows(run)] == [11, 22, 33]


def test_divergence_stops_every_process_and_keeps_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    p = cli("train", "--nproc", "2", "--epochs", "2", "--hidden", "16", "--lr", "1e9", "--out", str(run))
    assert p.returncode == 3, p.stderr
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "diverged" in errors[0] and "--resume" in errors[0]
    assert (run / "checkpoint" / "state.json").is_file()


def test_a_process_that_dies_stops_the_others_with_a_clear_message(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.Popen([sys.executable, "-m", "autoencoder_toolkit", "train", "--nproc", "2", "--epochs",
                             "500", "--out", str(tmp_path / "run"), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        victim = None
        deadline = time.time() + 120
        while victim is None and time.time() < deadline:
            time.sleep(0.5)
            kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            for pid in kids:
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"RANK=1" in environ and (tmp_path / "run" / "metrics.csv").exists():
                    victim = int(pid)
        assert victim is not None, "rank 1 never started training"
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)  # no hang: the launcher stops rank 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 4  # stopped by the system, not an internal error
    assert "training process 1 of 2 failed (killed by SIGKILL)" in err and "the other processes were stopped" in err
    assert "internal error" not in err and "Traceback" not in err
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()  # saved work survives


def _processes_writing(run: Path) -> list[int]:
    """Process ids whose command line names the run directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if str(run).encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_killing_the_launcher_stops_its_processes_and_frees_the_run(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.Popen([sys.executable, "-m", "autoencoder_toolkit", "train", "--nproc", "2", "--epochs",
                             "500", "--hidden", "16", "--out", str(run), "--quiet"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        deadline = time.time() + 180
        while not (run / "metrics.csv").exists() and time.time() < deadline:
            time.sleep(0.5)
        assert (run / "metrics.csv").exists(), "training never started"
        holder = (run / ".lock").read_text()
        assert holder.startswith("process ")  # the main training process holds the run directory
        os.kill(proc.pid, signal.SIGKILL)  # no chance to stop its children itself
        proc.wait(timeout=30)
        deadline = time.time() + 60
        while _processes_writing(run) and time.time() < deadline:
            time.sleep(0.5)
        assert _processes_writing(run) == [], "training processes outlived their launcher"
    finally:
        for pid in _processes_writing(run):
            os.kill(pid, signal.SIGKILL)
    # the lock died with its holder: the run can be resumed at once
    p = cli("train", "--resume", str(run), "--epochs", "1", "--quiet")
    assert p.returncode == 0, p.stderr
