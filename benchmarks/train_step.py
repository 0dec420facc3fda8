"""Training-step benchmark of the InfoMax-VAE: throughput, peak memory and roofline.

Run from the repository root::

    python -m benchmarks.train_step            # full CPU run (a few minutes)
    python -m benchmarks.train_step --quick    # few repeats, to test the script
    python -m benchmarks.train_step --device cuda
    python -m benchmarks.train_step --variants a,c --out /tmp/bench

Variants, side by side on the same data and network sizes:

(a) ``autoencoder_toolkit.infomaxvaes.train_(model, x, opt)``: the faithful step (VAE
    update on ``infomaxloss``, then a critic update on ``miloss`` with a fresh forward
    pass of the updated VAE);
(b) ``train_(model, x, opt, fused=True)``: the library's fast path;
(c) :mod:`benchmarks.authors_baseline`: plain PyTorch, trained as the paper authors'
    code does (one shared forward, ``retain_graph=True``, two optimizers);
(d) the roofline: the step's analytic FLOPs (:mod:`benchmarks.flops`) over the best
    sustained fp32 matmul rate measured on the step's own layer shapes
    (:mod:`benchmarks.matmul`) at the thread count used for training.

A variant that cannot be imported or run is reported as "n/a" and the rest carry on.
Results go to ``<out>/train_step_<device>.md`` and ``.json`` and are printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import authors_baseline, flops, handwritten_fused, matmul

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
QUICK_OUT = DEFAULT_OUT / "tmp"

#: (workload, batch sizes): the headline point is mnist-mlp at B=256.
DEFAULT_POINTS: list[tuple[str, list[int]]] = [("mnist-mlp", [64, 256, 1024, 4096]), ("digits-mlp", [256]),
                                               ("tiny-mlp", [64])]
LR = 1e-3
#: Keyword arguments of every Adam optimizer in the run (all variants alike); set by --adam.
ADAM_KWARGS: dict = {"fused": True}
SEED = 1234


@dataclass
class Settings:
    device: torch.device
    threads: int
    variants: list[str]
    points: list[tuple[str, int]]
    seconds: float          # timed budget per variant and point
    max_steps: int
    min_steps: int
    warmup: int
    memory_steps: int
    memory: bool
    gemm_budget_s: float
    gemm_min_blocks: int
    square_sizes: list[int]
    quick: bool
    out: Path


class Unavailable(Exception):
    """The variant cannot be built or run in this checkout (reported as n/a)."""


# ----------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------

def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_info() -> dict:
    """The CPU model, its SIMD extensions and the physical cores listed (from /proc/cpuinfo)."""
    info: dict = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # pragma: no cover - not Linux
        return {"model": platform.processor() or "unknown"}
    cores = set()
    phys = core = None
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, val = (s.strip() for s in line.partition(":"))
        if key == "model name" and "model" not in info:
            info["model"] = val
        elif key == "flags" and "simd" not in info:
            flags = set(val.split())
            info["simd"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni",
                                         "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
        elif key == "physical id":
            phys = val
        elif key == "core id":
            core = val
            cores.add((phys, core))
    info["physical_cores_listed"] = len(cores) or None
    return info


def _cgroup_cpu_limit() -> str | None:
    try:
        return Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        return None


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
        commit = out.stdout.strip()
        return commit if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit) else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(settings: Settings) -> dict:
    blas = [l.strip() for l in torch.__config__.show().splitlines() if "BLAS_INFO" in l or "LAPACK_INFO" in l]
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_info(),
        "logical_cpus": os.cpu_count(),
        "usable_cores": usable_cores(),
        "cgroup_cpu_max": _cgroup_cpu_limit(),
        "memory_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "blas": blas,
        "device": str(settings.device),
        "git_commit": _git_commit(),
    }
    if settings.device.type == "cuda":
        props = torch.cuda.get_device_properties(settings.device)
        info["cuda"] = {
            "name": props.name, "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 2), "torch_cuda": torch.version.cuda,
            "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    return info


# ----------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------

def make_data(w: flops.Workload, batch: int, device: torch.device, seed: int = SEED) -> torch.Tensor:
    """Random binarised data ``(B, D)`` in {0, 1}, float32, fixed seed."""
    g = torch.Generator().manual_seed(seed + batch)
    return (torch.rand((batch, w.n_input), generator=g) < 0.5).to(torch.float32).to(device)


def _library_model(w: flops.Workload, device: torch.device, seed: int) -> tuple[Any, Any]:
    """The package's InfoMax-VAE of workload ``w`` and its optimizer pair (Adam, ``ADAM_KWARGS``)."""
    try:
        from autoencoder_toolkit import decoders, encoders, infomaxvaes, setup
    except Exception as e:  # noqa: BLE001 - any import problem means "not available"
        raise Unavailable(f"import failed: {type(e).__name__}: {e}") from e
    h_e, h_d, h_c = list(w.encoder_hidden), list(w.decoder_hidden), list(w.critic_hidden)
    torch.manual_seed(seed)
    enc = encoders.JointGaussianLogEncoder(w.n_input, w.n_latent, h_e, ["relu"] * len(h_e), "identity")
    dec = decoders.BernoulliDecoder(w.n_input, w.n_latent, h_d, ["relu"] * len(h_d), "sigmoid")
    mi = infomaxvaes.MutualInfoChain(w.n_input, w.n_latent, h_c, ["relu"] * len(h_c), "identity")
    model = infomaxvaes.InfoMaxVAE(enc * dec, mi).to(device)
    return model, setup(torch.optim.Adam, model, lr=LR, **ADAM_KWARGS)


def time_optimizer_update(workload: str, batch: int, settings: Settings, reps: int = 30) -> dict:
    """Median time of the Adam updates alone (the VAE's and the critic's ``step()``), as every variant runs them.

    The gradients come from one backward pass of the fused step; the updates are then
    repeated on them (after 3 warm-up updates). Every variant pays this cost once per step.
    """
    from autoencoder_toolkit.fused import fused_losses

    w = flops.WORKLOADS[workload]
    device = settings.device
    model, opt = _library_model(w, device, SEED)
    fused_losses(model, make_data(w, batch, device)).surrogate.backward()
    times = []
    for i in range(3 + max(3, reps)):
        _sync(device)
        t0 = time.perf_counter()
        opt.vae.step()
        opt.mi.step()
        _sync(device)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in model.parameters())
    return {"median_ms": 1e3 * statistics.median(times), "reps": len(times), "parameters": n_params}


def _library_step(variant: str, w: flops.Workload, x: torch.Tensor, device: torch.device,
                  seed: int) -> Callable[[], tuple[float, float]]:
    from autoencoder_toolkit import infomaxvaes

    model, opt = _library_model(w, device, seed)
    train_ = infomaxvaes.train_
    if variant == "a":
        return lambda: train_(model, x, opt, loss_return=True)
    if variant == "f":
        return lambda: train_(model, x, opt, loss_return=True, fused=True, compile=True)
    return lambda: train_(model, x, opt, loss_return=True, fused=True)


def build_variant(variant: str, w: flops.Workload, x: torch.Tensor, device: torch.device,
                  seed: int = SEED) -> Callable[[], tuple[float, float]]:
    """A closure running one training step of ``variant`` on ``x``."""
    if variant in ("c", "e"):
        model = authors_baseline.build_baseline(w.n_input, w.n_latent, w.encoder_hidden, w.decoder_hidden,
                                                w.critic_hidden, seed=seed, device=device, lr=LR,
                                                adam_kwargs=ADAM_KWARGS)
        gen = torch.Generator(device=device).manual_seed(seed)
        if variant == "e":
            return lambda: handwritten_fused.handwritten_step(model, x, gen)
        return lambda: authors_baseline.baseline_step(model, x, gen)
    if variant in ("a", "b", "f"):
        return _library_step(variant, w, x, device, seed)
    raise ValueError(f"unknown variant {variant!r}")


def _not_available_reason(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".splitlines()[0]
    if len(msg) > 160:
        msg = msg[:157] + "..."
    if isinstance(e, Unavailable):
        return f"not available ({msg})"
    if isinstance(e, (ImportError, NotImplementedError, AttributeError, TypeError)):
        return f"not available ({msg})"
    return f"failed ({msg})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------

def _proc_status_bytes(key: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of this process from ``/proc/self/status``, in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux ``clear_refs`` 5); False where refused."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_probe(workload: str, batch: int, variant: str, device: torch.device, threads: int,
                 steps: int) -> dict:
    """Peak memory of ``steps`` training steps of a freshly built variant.

    CPU: the process's peak resident set (``VmHWM``, the figure ``getrusage``'s
    ``ru_maxrss`` reports, but for this process image alone: ``ru_maxrss`` of a child
    also keeps the RSS it inherited from its parent at ``fork``) after the steps, minus
    the resident set after building the model, optimizers and data (so gradients, Adam
    state and activations count). The peak mark is reset just before the steps. CUDA:
    ``torch.cuda.max_memory_allocated`` over the steps minus the allocation before them.
    """
    torch.set_num_threads(threads)
    w = flops.WORKLOADS[workload]
    x = make_data(w, batch, device)
    try:
        step = build_variant(variant, w, x, device)
    except Exception as e:  # noqa: BLE001
        return {"status": _not_available_reason(e)}
    gc.collect()
    reset = False
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        reset = _reset_peak_rss()
        base = _proc_status_bytes("VmRSS")
    try:
        for _ in range(steps):
            step()
    except Exception as e:  # noqa: BLE001
        return {"status": _not_available_reason(e)}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        method = "torch.cuda.max_memory_allocated - memory_allocated before the steps"
    else:
        peak = _proc_status_bytes("VmHWM")
        method = ("peak RSS (VmHWM) after the steps - RSS (VmRSS) after building, own subprocess"
                  + ("" if reset else "; peak mark could not be reset"))
        if base is None or peak is None:  # pragma: no cover - no /proc
            return {"status": "failed (no /proc/self/status)"}
    return {"status": "ok", "baseline_bytes": base, "peak_bytes": peak, "delta_bytes": peak - base,
            "steps": steps, "peak_mark_reset": reset, "method": method}


def memory_probe_subprocess(workload: str, batch: int, variant: str, settings: Settings) -> dict:
    spec = {"workload": workload, "batch": batch, "variant": variant, "device": str(settings.device),
            "threads": settings.threads, "steps": settings.memory_steps, "adam": dict(ADAM_KWARGS)}
    cmd = [sys.executable, "-m", "benchmarks.train_step", "--memory-probe", json.dumps(spec)]
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads), MKL_NUM_THREADS=str(settings.threads))
    try:
        res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "failed (memory probe timed out)"}
    for line in reversed(res.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"failed (memory probe: {tail[:160]})"}


# ----------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------

@dataclass
class VariantResult:
    variant: str
    status: str = "ok"
    times_s: list[float] = field(default_factory=list)
    counted_flops: int | None = None
    final_losses: tuple[float, float] | None = None
    memory: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.times_s)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def quartiles_s(self) -> tuple[float, float]:
        if len(self.times_s) < 2:
            return self.times_s[0], self.times_s[0]
        q = statistics.quantiles(self.times_s, n=4, method="inclusive")
        return q[0], q[2]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_point(workload: str, batch: int, settings: Settings) -> dict[str, VariantResult]:
    """Time every variant at one (workload, batch) point, interleaving the variants."""
    device = settings.device
    w = flops.WORKLOADS[workload]
    x = make_data(w, batch, device)
    results = {v: VariantResult(v) for v in settings.variants}
    steps: dict[str, Callable[[], tuple[float, float]]] = {}
    for v in settings.variants:
        try:
            steps[v] = build_variant(v, w, x, device)
        except Exception as e:  # noqa: BLE001
            results[v].status = _not_available_reason(e)
    # CUDA: memory in this process, on fresh builds, before anything else runs.
    if device.type == "cuda" and settings.memory:
        for v in list(steps):
            results[v].memory = memory_probe(workload, batch, v, device, settings.threads, settings.memory_steps)
            gc.collect()
            torch.cuda.empty_cache()
    # First step under the FLOP counter (also the first warm-up step).
    for v in list(steps):
        try:
            results[v].counted_flops = flops.count_matmul_flops(steps[v])
        except Exception as e:  # noqa: BLE001
            results[v].status = _not_available_reason(e)
            del steps[v]
    for v in list(steps):
        try:
            for _ in range(settings.warmup):
                steps[v]()
        except Exception as e:  # noqa: BLE001
            results[v].status = _not_available_reason(e)
            del steps[v]
    _sync(device)
    active = list(steps)
    spent = {v: 0.0 for v in active}
    rnd = 0
    while active:
        order = active[rnd % len(active):] + active[:rnd % len(active)]
        for v in order:
            try:
                _sync(device)
                t0 = time.perf_counter()
                losses = steps[v]()
                _sync(device)
                dt = time.perf_counter() - t0
            except Exception as e:  # noqa: BLE001
                results[v].status = _not_available_reason(e)
                active.remove(v)
                continue
            results[v].times_s.append(dt)
            results[v].final_losses = (float(losses[0]), float(losses[1]))
            spent[v] += dt
            n = len(results[v].times_s)
            if n >= settings.max_steps or (spent[v] >= settings.seconds and n >= settings.min_steps):
                active.remove(v)
        rnd += 1
    for v, r in results.items():
        if r.final_losses is not None and not all(np.isfinite(r.final_losses)):
            r.status = f"failed (non-finite loss {r.final_losses})"
    return results


# ----------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------

def _fmt_gflop(f: float | None) -> str:
    return "–" if f is None else f"{f / 1e9:.3f}"


def _mib(b: float) -> str:
    return f"{b / 2**20:.1f}"


def _contention_text(machine: dict) -> str:
    c = machine.get("contention") or {}
    parts = []
    if "steal_fraction" in c:
        parts.append(f"{100 * c['steal_fraction']:.1f}% of CPU time stolen by the host (/proc/stat steal), "
                     f"{100 * c['busy_fraction']:.0f}% busy")
    if c.get("loadavg_start"):
        parts.append(f"load average {c['loadavg_start']} → {c['loadavg_end']}")
    return "; ".join(parts) or "not measured"


def build_report(settings: Settings, machine: dict, roofline: dict, points: list[dict], wall_s: float,
                 command: str) -> tuple[str, dict]:
    peak = roofline["peak_gflops"]
    rows_t, rows_f = [], []
    notes: dict[str, list[str]] = {}
    for p in points:
        w = flops.WORKLOADS[p["workload"]]
        b = p["batch"]
        ref = p["variants"].get("a")
        ref_sps = ref["samples_per_s"] if ref and ref["status"] == "ok" else None
        for v in settings.variants:
            r = p["variants"][v]
            label = f"({v}) {flops.VARIANT_NAMES[v]}"
            mem = r.get("memory") or {}
            mem_s = _mib(mem["delta_bytes"]) if mem.get("status") == "ok" else (
                "–" if not mem else mem.get("status", "–").split(" (")[0])
            if r["status"] != "ok":
                short = r["status"].split(" (")[0]
                na = "n/a (not available)" if short == "not available" else f"n/a ({short})"
                notes.setdefault(f"({v}): {r['status']}", []).append(f"{w.name} B={b}")
                rows_t.append(f"| {w.name} | {b} | {label} | {na} | | | | | {mem_s} |")
                rows_f.append(f"| {w.name} | {b} | {label} | {_fmt_gflop(r['analytic_flops'])} | "
                              f"{_fmt_gflop(r['counted_flops'])} | n/a | | | |")
                continue
            vs = f"{r['samples_per_s'] / ref_sps:.2f}×" if ref_sps else "–"
            rows_t.append(
                f"| {w.name} | {b} | {label} | {r['samples_per_s']:,.0f} | {r['median_ms']:.2f} | "
                f"{r['q1_ms']:.2f}–{r['q3_ms']:.2f} | {r['n_steps']} | {vs} | {mem_s} |")
            rows_f.append(
                f"| {w.name} | {b} | {label} | {_fmt_gflop(r['analytic_flops'])} | "
                f"{_fmt_gflop(r['counted_flops'])} | {r['achieved_gflops']:.1f} | "
                f"{100 * r['roofline_own']:.1f}% | {100 * r['roofline_useful']:.1f}% | "
                f"{100 * r['gemm_sum_fraction']:.0f}% |")
    rows_o = []
    for p in points:
        adam = p.get("optimizer")
        va, vb = p["variants"].get("a"), p["variants"].get("b")
        if not adam or not va or not vb or va["status"] != "ok" or vb["status"] != "ok":
            continue
        o = adam["median_ms"]
        rest = (va["median_ms"] - o) / (vb["median_ms"] - o) if vb["median_ms"] > o else float("nan")
        rows_o.append(f"| {flops.WORKLOADS[p['workload']].name} | {p['batch']} | {adam['parameters']:,} | {o:.2f} | "
                      f"{va['median_ms']:.2f} | {vb['median_ms']:.2f} | "
                      f"{va['median_ms'] / vb['median_ms']:.2f}× | {rest:.2f}× |")
    cpu = machine["cpu"]
    dev = settings.device
    if dev.type == "cuda":
        hw = (f"{machine['cuda']['name']} (torch {machine['torch']}, CUDA {machine['cuda']['torch_cuda']}, "
              f"TF32 matmul {'on' if machine['cuda']['matmul_allow_tf32'] else 'off'}); host CPU {cpu.get('model')}")
    else:
        hw = (f"{cpu.get('model')} ({', '.join(cpu.get('simd', []))}), {machine['usable_cores']} usable cores "
              f"of {machine['logical_cpus']} logical")
    best = roofline["best_shape"]
    sq = ", ".join(f"n={s['m']}: {s['gflops']:.1f}" for s in roofline["square"])
    lines = [
        f"# InfoMax-VAE training step on {dev.type.upper()}",
        "",
        f"- Machine: {hw}; memory {machine['memory_gib']} GiB; {machine['platform']}",
        f"- torch {machine['torch']}, numpy {machine['numpy']}, Python {machine['python']}; "
        f"threads: torch.set_num_threads({settings.threads}) (interop {machine['torch_interop_threads']})",
        f"- Date: {machine['date']}; commit {machine['git_commit'] or 'unknown'}; command `{command}`"
        + (" (quick mode: few repeats, not for reporting)" if settings.quick else ""),
        f"- float32, Adam (lr {LR}, {', '.join(f'{k}={v}' for k, v in ADAM_KWARGS.items())}) for the VAE and for the critic, random binarised data (fixed seed); "
        f"timing: {settings.warmup} warm-up step(s) after one FLOP-counted step, then each variant "
        f"timed step by step, interleaved with the others, until {settings.seconds:g} s or "
        f"{settings.max_steps} steps (at least {settings.min_steps}); median reported.",
        f"- Roofline (d): best sustained fp32 matmul on the step's own layer shapes, {settings.threads} threads: "
        f"**{peak:.1f} GFLOP/s** ({best['kind']} {best['m']}×{best['k']}×{best['n']}, best of "
        f"{roofline['passes']} passes over {len(roofline['shapes'])} shapes); square torch.mm GFLOP/s: {sq}.",
        f"- Total run time: {wall_s:.0f} s. Host contention during the timed part: {_contention_text(machine)}.",
        "",
        "## Throughput and memory",
        "",
        "| workload | B | variant | samples/s | step ms (median) | IQR ms | steps | vs (a) | peak mem MiB¹ |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows_t,
        "",
        *([f"- Not run: {k} [{', '.join(pts)}]" for k, pts in notes.items()] + [""] if notes else []),
        *(["## The optimizer's share", "",
            "Both Adam updates (VAE and critic) timed alone, as every variant runs them once per step "
            "(median of 30 after 3 warm-up updates), against the median steps of (a) and (b) above; the last "
            "column is (b)'s speed-up over (a) with that fixed cost taken out of both.", "",
            "| workload | B | parameters | Adam ms | (a) ms | (b) ms | (a)/(b) | without Adam |",
            "|---|---:|---:|---:|---:|---:|---:|---:|", *rows_o, ""] if rows_o else []),
        "## FLOPs and roofline",
        "",
        "| workload | B | variant | GFLOP/step² | counted³ | achieved GFLOP/s | roofline (own FLOPs)⁴ | "
        "roofline (useful FLOPs)⁵ | GEMM-sum⁶ |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
        *rows_f,
        "",
        "¹ " + ("Peak memory: `torch.cuda.max_memory_allocated` during "
                f"{settings.memory_steps} steps of a freshly built model, minus `memory_allocated` before them "
                "(peak statistics reset between variants)." if dev.type == "cuda" else
                f"Peak memory: each variant is built and run for {settings.memory_steps} steps in its own "
                "subprocess; figure = peak RSS during the steps (`VmHWM` of /proc/self/status, the quantity "
                "`ru_maxrss` reports but for this process image alone, mark reset just before the steps) "
                "minus the RSS after building the model, optimizers and data; it includes gradients, Adam "
                "state, activations and allocator overhead."),
        "² Analytic matrix-product FLOPs of the schedule the variant runs (benchmarks/flops.py: a Dense "
        "layer costs 2·B·in·out forward, the same again for each of its input and weight gradients when "
        "they are computed; element-wise work and the optimizer are not counted).",
        "³ Matrix-product FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` on a real step "
        "(cross-check of ²).",
        f"⁴ Achieved GFLOP/s (own FLOPs / median step time) over the roofline {peak:.1f} GFLOP/s; own FLOPs "
        "are the counted ones where available, otherwise the analytic ones.",
        "⁵ Useful FLOPs = the FLOPs of the fused step, schedule (b), per median step time of this "
        "variant, over the roofline: the rate at which the variant gets the work of one training step done.",
        "⁶ Time the step's matrix products take when each is timed alone at its own shape "
        "(benchmarks/matmul.py, best pass), as a share of the measured step time; the rest is element-wise "
        "work, the optimizer, framework overhead and machine noise.",
        "",
        "Schedules counted:",
        "",
        *(f"- ({v}) {flops.VARIANT_NAMES[v]}: {flops.schedule(v, flops.WORKLOADS['mnist-mlp'], 1).description}"
          for v in settings.variants),
        "",
        *_targets(points),
    ]
    md = "\n".join(lines)
    data = {"machine": machine, "command": command, "wall_s": wall_s,
            "settings": {"device": str(settings.device), "threads": settings.threads,
                         "variants": settings.variants, "points": settings.points, "seconds": settings.seconds,
                         "max_steps": settings.max_steps, "min_steps": settings.min_steps,
                         "warmup": settings.warmup, "memory_steps": settings.memory_steps,
                         "quick": settings.quick, "lr": LR, "dtype": "float32"},
            "workloads": {name: wl.config() for name, wl in flops.WORKLOADS.items()},
            "roofline": roofline, "points": points}
    return md, data


def summarise_point(workload: str, batch: int, results: dict[str, VariantResult], gemm_times: dict,
                    peak_gflops: float) -> dict:
    w = flops.WORKLOADS[workload]
    useful = flops.useful_flops(w, batch)
    out = {"workload": workload, "batch": batch, "useful_flops": useful, "variants": {}}
    for v, r in results.items():
        sched = flops.schedule(v, w, batch)
        gemm_s = sum(gemm_times[(g.kind, *g.mkn)]["seconds"] for g in sched.gemms)
        d = {"status": r.status if (r.ok or r.status != "ok") else "failed (no timed steps)",
             "analytic_flops": sched.total, "schedule": sched.summary(), "counted_flops": r.counted_flops,
             "gemm_only_s": gemm_s, "memory": r.memory}
        if r.ok:
            med = r.median_s
            q1, q3 = r.quartiles_s()
            own = r.counted_flops if r.counted_flops else sched.total
            d.update({"n_steps": len(r.times_s), "median_ms": 1e3 * med, "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
                      "times_ms": [round(1e3 * t, 4) for t in r.times_s],
                      "samples_per_s": batch / med, "own_flops": own,
                      "achieved_gflops": own / med / 1e9,
                      "roofline_own": own / med / 1e9 / peak_gflops,
                      "roofline_useful": useful / med / 1e9 / peak_gflops,
                      "gemm_sum_fraction": gemm_s / med,
                      "final_losses": r.final_losses,
                      "counted_matches_analytic": (r.counted_flops == sched.total) if r.counted_flops else None})
        out["variants"][v] = d
    return out


# ----------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------

def _parse_points(specs: list[str] | None) -> list[tuple[str, int]]:
    if not specs:
        return [(name, b) for name, bs in DEFAULT_POINTS for b in bs]
    pts = []
    for spec in specs:
        name, _, bs = spec.partition(":")
        if name not in flops.WORKLOADS:
            raise SystemExit(f"--workload: unknown workload {name!r}; choose from {', '.join(flops.WORKLOADS)}")
        for b in (bs.split(",") if bs else ["256"]):
            pts.append((name, int(b)))
    return pts


def _targets(points: list[dict]) -> list[str]:
    """The step targets, each met or not, from the points measured (mnist-mlp)."""
    def ms(p: dict, v: str) -> float | None:
        r = p["variants"].get(v)
        return r["median_ms"] if r and r["status"] == "ok" else None

    rows = []
    for p in points:
        if p["workload"] != "mnist-mlp":
            continue
        b, e, f = ms(p, "b"), ms(p, "e"), ms(p, "f")
        if p["batch"] in (64, 256) and b and e:
            rows.append(f"| library eager fused (b) / hand-written (e), B={p['batch']} | at most 1.10 | "
                        f"{b / e:.3f} | {'met' if b / e <= 1.10 else 'not met'} |")
        if p["batch"] == 256 and f:
            for ref in ("c", "a"):
                r = ms(p, ref)
                if r:
                    rows.append(f"| compiled (f) speed-up over ({ref}), B=256 | at least 2.2 | {r / f:.2f} | "
                                f"{'met' if r / f >= 2.2 else 'not met'} |")
        rf = p["variants"].get("f")
        if p["batch"] >= 1024 and rf and rf["status"] == "ok":
            share = rf["roofline_own"]
            rows.append(f"| compiled (f) share of the matmul roofline, B={p['batch']} | at least 70% | "
                        f"{100 * share:.0f}% | {'met' if share >= 0.70 else 'not met'} |")
    if not rows:
        return []
    return ["## Targets", "", "| target | wanted | measured | |", "|---|---:|---:|---|", *rows, ""]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_step", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few repeats (tests the script); writes under results/tmp")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--variants", default="a,b,c,e,f",
                   help="comma-separated subset of a,b,c,e,f (default all; f compiles, tens of seconds per point)")
    p.add_argument("--out", default=None, help="output directory (default benchmarks/results)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: usable cores)")
    p.add_argument("--workload", action="append", metavar="NAME:B1,B2",
                   help="points to run, e.g. mnist-mlp:64,256 (repeatable; default mnist-mlp:64,256,1024,4096 "
                        "and digits-mlp:256)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per variant and point (default 3)")
    p.add_argument("--max-steps", type=int, default=None, help="timed steps cap per variant and point (default 30)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--adam", choices=("fused", "foreach"), default="fused",
                   help="Adam implementation for every variant (default fused: torch's single-kernel Adam)")
    p.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def make_settings(a: argparse.Namespace) -> Settings:
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available to torch")
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in flops.VARIANT_NAMES]
    if bad or not variants:
        raise SystemExit(f"--variants: expected a comma-separated subset of a,b,c,e,f, got {a.variants!r}")
    quick = a.quick
    out = Path(a.out) if a.out else (QUICK_OUT if quick else DEFAULT_OUT)
    return Settings(
        device=device, threads=a.threads or usable_cores(), variants=variants, points=_parse_points(a.workload),
        seconds=a.seconds if a.seconds is not None else (0.3 if quick else 3.0),
        max_steps=a.max_steps if a.max_steps is not None else (4 if quick else 30),
        min_steps=2 if quick else 5, warmup=1 if quick else 2, memory_steps=2 if quick else 3,
        memory=not a.no_memory, gemm_budget_s=0.02 if quick else 0.15, gemm_min_blocks=3 if quick else 7,
        square_sizes=([512, 1024] if quick else [512, 1024, 2048]) + ([4096, 8192] if device.type == "cuda" else []),
        quick=quick, out=out)


def _roofline_shapes(settings: Settings) -> set[tuple[str, int, int, int]]:
    shapes = set()
    variants = sorted(set(settings.variants) | {"b"})
    for name, b in settings.points:
        for v in variants:
            for g in flops.schedule(v, flops.WORKLOADS[name], b).gemms:
                shapes.add((g.kind, *g.mkn))
    return shapes


def measure_roofline(settings: Settings, previous: tuple[dict, dict] | None = None) -> tuple[dict, dict]:
    """Time the step's product shapes (and square ones); with ``previous``, keep each shape's best pass."""
    kw = dict(budget_s=settings.gemm_budget_s, min_blocks=settings.gemm_min_blocks,
              min_block_s=0.005 if settings.quick else 0.01)
    square = {s["m"]: s for s in matmul.time_square(settings.square_sizes, settings.device, **kw)}
    timings = matmul.measure_shapes(_roofline_shapes(settings), settings.device, **kw)
    passes = 1
    if previous is not None:
        prev_roof, prev_timings = previous
        passes = prev_roof["passes"] + 1
        for key, t in prev_timings.items():
            if key not in timings or t["gflops"] > timings[key]["gflops"]:
                timings[key] = t
        for s in prev_roof["square"]:
            if s["m"] not in square or s["gflops"] > square[s["m"]]["gflops"]:
                square[s["m"]] = s
    best = max(timings.values(), key=lambda t: t["gflops"])
    roof = {"peak_gflops": best["gflops"], "best_shape": dict(best), "passes": passes,
            "method": ("median over blocks of back-to-back calls, best of the passes (before and after the "
                       "timed steps) per shape; peak = best shape among the step's own products"),
            "threads": settings.threads, "square": [dict(square[n]) for n in sorted(square)],
            "shapes": [dict(t) for t in timings.values()]}
    return roof, timings


def _cpu_times() -> list[int] | None:
    """Aggregate ``/proc/stat`` CPU times (user, nice, system, idle, iowait, irq, softirq, steal)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
        return [int(v) for v in first[1:9]]
    except (OSError, ValueError, IndexError):
        return None


def _loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def contention(start: list[int] | None, end: list[int] | None) -> dict:
    """Share of CPU time stolen by the host (``steal``) and spent busy, between two readings."""
    if not start or not end:
        return {}
    d = [b - a for a, b in zip(start, end)]
    total = sum(d) or 1
    return {"steal_fraction": d[7] / total, "busy_fraction": (total - d[3] - d[4]) / total}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    ADAM_KWARGS.clear()
    ADAM_KWARGS.update({"fused": True} if a.adam == "fused" else {"foreach": True})
    if a.memory_probe:
        spec = json.loads(a.memory_probe)
        ADAM_KWARGS.clear()
        ADAM_KWARGS.update(spec.get("adam", {"fused": True}))
        res = memory_probe(spec["workload"], spec["batch"], spec["variant"], torch.device(spec["device"]),
                           spec["threads"], spec["steps"])
        print(json.dumps(res))
        return 0
    t_start = time.perf_counter()
    settings = make_settings(a)
    torch.set_num_threads(settings.threads)
    command = "python -m benchmarks.train_step" + ("" if argv is None and len(sys.argv) <= 1 else
                                                   " " + " ".join(sys.argv[1:] if argv is None else argv))
    machine = machine_info(settings)
    _log(f"[bench] {machine['cpu'].get('model')}; torch {torch.__version__}; threads {settings.threads}; "
         f"device {settings.device}; variants {','.join(settings.variants)}")
    cpu0, load0 = _cpu_times(), _loadavg()
    _log("[bench] measuring matmul throughput on the step's layer shapes ...")
    roofline, gemm_times = measure_roofline(settings)
    _log(f"[bench] roofline {roofline['peak_gflops']:.1f} GFLOP/s "
         f"({time.perf_counter() - t_start:.0f} s elapsed)")
    points = []
    for name, b in settings.points:
        res = run_point(name, b, settings)
        for v, r in res.items():
            msg = (f"{b / r.median_s:,.0f} samples/s, median {1e3 * r.median_s:.2f} ms over {len(r.times_s)}"
                   if r.ok else f"n/a ({r.status})")
            _log(f"[bench] {name} B={b} ({v}): {msg}")
        points.append((name, b, res, time_optimizer_update(name, b, settings)))
        gc.collect()
    _log("[bench] matmul throughput, second pass ...")
    roofline, gemm_times = measure_roofline(settings, (roofline, gemm_times))
    machine["contention"] = {**contention(cpu0, _cpu_times()), "loadavg_start": load0, "loadavg_end": _loadavg()}
    _log(f"[bench] roofline {roofline['peak_gflops']:.1f} GFLOP/s (best of {roofline['passes']} passes); "
         f"contention {machine['contention']}")
    if settings.memory and settings.device.type != "cuda":
        _log("[bench] peak memory, one subprocess per variant ...")
        for name, b, res, _ in points:
            for v, r in res.items():
                if r.status == "ok":
                    r.memory = memory_probe_subprocess(name, b, v, settings)
    summaries = [{**summarise_point(name, b, res, gemm_times, roofline["peak_gflops"]), "optimizer": adam}
                 for name, b, res, adam in points]
    wall = time.perf_counter() - t_start
    md, data = build_report(settings, machine, roofline, summaries, wall, command)
    settings.out.mkdir(parents=True, exist_ok=True)
    stem = f"train_step_{settings.device.type}"
    (settings.out / f"{stem}.md").write_text(md)
    (settings.out / f"{stem}.json").write_text(json.dumps(data, indent=1, default=str))
    print(md)
    _log(f"[bench] wrote {settings.out / stem}.md and .json in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
