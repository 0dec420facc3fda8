"""The main job, side by side: ``autoencoder-toolkit train`` with its previous and its current defaults.

Run from the repository root::

    python -m benchmarks.main_job              # digits, 150 epochs, 3 seeds per configuration
    python -m benchmarks.main_job --quick      # 10 epochs, 1 seed: to test the script

Configurations, each a fresh process running the command's training job on one thread:

``previous``
    the faithful InfoMax-VAE step, Adam's per-tensor implementation, a checkpoint after
    every epoch (the command's defaults before the fused step became the default);
``current``
    the command's defaults: the fused step, torch's fused Adam, checkpoints as often as
    keeps their cost under 2% of the time.

The runs alternate (previous, current, previous, ...) so that a change in the machine's load
affects both alike. Reported: the wall time of each run (training, the final evaluation and
figures included) and its held-out metrics from ``evaluation.json``; the ratio of the median
wall times, and each metric's mean and spread over seeds per configuration. Results go to
``benchmarks/results/main_job_cpu.md`` (and ``.json``) and are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .train_step import cpu_info

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"

CONFIGURATIONS = {
    "previous": {"given": {"fused": False}, "fused_adam": False, "checkpoint_every": 1},
    "current": {"given": {}, "fused_adam": None, "checkpoint_every": "auto"},
}

_JOB = """
import json, sys, time, torch
torch.set_num_threads(1)
from autoencoder_toolkit.training import job
spec = json.loads(sys.argv[1])
t0 = time.perf_counter()
result = job.train_run(spec["given"], progress=False, fused_adam=spec["fused_adam"],
                       checkpoint_every=spec["checkpoint_every"])
print(json.dumps({"seconds": time.perf_counter() - t0, "run": str(result.run)}))
"""

METRICS = ("elbo", "reconstruction_loglikelihood", "kl", "accuracy")


def run_once(name: str, seed: int, epochs: int, out_dir: Path) -> dict[str, Any]:
    spec = dict(CONFIGURATIONS[name])
    spec["given"] = {**spec["given"], "epochs": epochs, "seed": seed, "out": str(out_dir / f"{name}-{seed}")}
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), MPLBACKEND="Agg",
               PYTHONPATH=str(REPO_ROOT))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _JOB, json.dumps(spec)], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, timeout=3600)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{name} (seed {seed}) failed: {done.stderr[-2000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    evaluation = json.loads((Path(record["run"]) / "evaluation.json").read_text())
    metrics = {k: evaluation.get(k) for k in METRICS}
    metrics["mi"] = (evaluation.get("mutual_info") or {}).get("mean")
    return {"configuration": name, "seed": seed, "wall_s": wall, "job_s": record["seconds"], **metrics}


def _summary(records: list[dict[str, Any]], name: str, key: str) -> str:
    values = [r[key] for r in records if r["configuration"] == name and r[key] is not None]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4g} ± {sd:.2g}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 epochs, 1 seed")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default 150)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default 3)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="results folder")
    args = parser.parse_args(argv)
    epochs = args.epochs or (10 if args.quick else 150)
    seeds = args.seeds or (1 if args.quick else 3)
    records = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            for name in ("previous", "current"):
                r = run_once(name, seed, epochs, Path(tmp))
                print(f"{name:8s} seed {seed}: {r['wall_s']:.1f} s (job {r['job_s']:.1f} s), ELBO {r['elbo']:.2f}, "
                      f"MI {r['mi'] if r['mi'] is None else round(r['mi'], 3)}, accuracy {r['accuracy']}",
                      flush=True)
                records.append(r)
    wall = {name: statistics.median(r["wall_s"] for r in records if r["configuration"] == name)
            for name in CONFIGURATIONS}
    ratio = wall["current"] / wall["previous"]
    cpu = cpu_info()
    lines = [
        "# The main job: previous against current defaults",
        "",
        f"- Machine: {cpu.get('model')} ({', '.join(cpu.get('simd', []))}), {os.cpu_count()} logical CPUs; "
        "one torch thread per run; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}",
        f"- Command: `python -m benchmarks.main_job{' --quick' if args.quick else ''}`; digits, {epochs} epochs, "
        f"{seeds} seed(s) per configuration, runs alternating; total {time.perf_counter() - started:.0f} s",
        "- previous: faithful step, per-tensor Adam, a checkpoint after every epoch; current: the command's "
        "defaults (fused step, fused Adam, checkpoints at under 2% of the time)",
        "",
        "| configuration | median wall s | " + " | ".join(("ELBO", "reconstruction", "KL", "MI", "accuracy")) + " |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in CONFIGURATIONS:
        cells = [_summary(records, name, k) for k in ("elbo", "reconstruction_loglikelihood", "kl", "mi", "accuracy")]
        lines.append(f"| {name} | {wall[name]:.1f} | " + " | ".join(cells) + " |")
    lines += ["", f"**Wall time, current / previous: {ratio:.2f}** (target: at most 0.5)."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (out / f"main_job_cpu{suffix}.md").write_text(text)
    (out / f"main_job_cpu{suffix}.json").write_text(json.dumps({"records": records, "ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
