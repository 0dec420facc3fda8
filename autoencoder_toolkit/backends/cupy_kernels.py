r"""Fused CUDA kernels (through CuPy) for the per-sample terms of the losses.

Every per-sample term of the VAE and InfoMax losses is an elementwise map followed by a
sum over a sample's elements. The generic array-API code runs the map as several
elementwise kernels, each writing a full ``(B, D)`` temporary, then a reduction; the
kernels here read each input once and write one value per sample:

=================  ===========================================================  ==========
kernel             per-sample value (sum over the sample's ``n`` elements)        output
=================  ===========================================================  ==========
Bernoulli LL       :math:`\sum x\log(p+ε) + (1-x)\log(1-p+ε)`                     ``(B,)``
Gaussian LL (log)  :math:`-\tfrac12\sum (x-μ)^2/e^{2s} - \sum s - \tfrac n2\log2π`  ``(B,)``
Gaussian LL (σ)    :math:`-\tfrac12\sum ((x-μ)/σ)^2 - \sum\logσ - \tfrac n2\log2π`  ``(B,)``
Gaussian LL fixed  :math:`-\tfrac12\sum (x-μ)^2/σ^2 - \tfrac n2(2\logσ+\log2π)`     ``(B,)``
KL (log)           :math:`\tfrac12\sum e^{2s} + μ^2 - 1 - 2s`                       ``(B,)``
KL (σ)             :math:`\tfrac12\sum σ^2 + μ^2 - 1 - 2\logσ`                     ``(B,)``
MI bound           :math:`\tfrac1B\sum_b g_b - \tfrac1B\sum_b e^{\tilde g_b - 1}`   scalar
reparameterise     :math:`μ + ε e^{s}` or :math:`μ + εσ` (elementwise)             like μ
=================  ===========================================================  ==========

(``s = logσ``, ``ε = eps(float32)``.) Each sum runs in one warp per sample (one
thread block per sample for samples of more than 2048 elements): the terms are computed in the input's precision (float32 or float64), accumulated in
float64, and reduced with warp shuffles, so the result equals the generic code's within
float32 rounding (and is usually closer to the exact value). The MI bound takes both
means in one pass (``mean(g − exp(g̃ − 1))``, the same number for equal batch sizes).

Each term has an analytic backward kernel (the ``*_backward`` functions), used by
:mod:`autoencoder_toolkit.backends.torch_bridge` to put these kernels into torch's
autograd. Kernels launch on CuPy's current stream.

CuPy itself is imported when a kernel first runs (or :func:`supports` meets a CuPy
array), so this module loads on machines without CuPy; :mod:`.dispatch` routes CuPy
arrays here.
"""

from __future__ import annotations

from typing import Any

from ..constants import EPS_FLOAT32, LOG2PI


class _Cupy:
    """The ``cupy`` module, imported on first use (CuPy is optional)."""

    def __getattr__(self, name: str) -> Any:
        import cupy as module

        return getattr(module, name)


cupy = _Cupy()

__all__ = [
    "supports",
    "bernoulli_loglikelihood",
    "gaussian_loglikelihood",
    "gaussian_kl",
    "reparameterize",
    "mutual_info_bound",
    "bernoulli_backward",
    "gaussian_backward",
    "gaussian_kl_backward",
    "reparameterize_backward",
    "mutual_info_bound_backward",
    "SOURCE",
]

SOURCE = r"""
#define AET_LOG2PI %(log2pi)r
#define AET_EPS %(eps)r

// ---- per-sample terms: term() maps one element, finish() turns the row sum into the value ----

struct Bernoulli {   // a = x, b = p
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    const T x = a[i];
    const T p = b[i];
    const T eps = (T)AET_EPS;
    return (double)(x * log(p + eps) + ((T)1 - x) * log((T)1 - p + eps));
  }
  __device__ static double finish(double sum, double n, double q) { return sum; }
};

struct GaussLog {    // a = x, b = mu, c = log sigma
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    const T d = a[i] - b[i];
    const T s = c[i];
    return (double)((T)-0.5 * (d * d / exp((T)2 * s)) - s);
  }
  __device__ static double finish(double sum, double n, double q) { return sum - 0.5 * n * AET_LOG2PI; }
};

struct GaussLinear { // a = x, b = mu, c = sigma
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    const T r = (a[i] - b[i]) / c[i];
    return (double)((T)-0.5 * (r * r) - log(c[i]));
  }
  __device__ static double finish(double sum, double n, double q) { return sum - 0.5 * n * AET_LOG2PI; }
};

struct GaussFixed {  // a = x, b = mu; q = sigma
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    const T d = a[i] - b[i];
    return (double)(d * d);
  }
  __device__ static double finish(double sum, double n, double q) {
    return -0.5 * sum / (q * q) - 0.5 * n * (2.0 * log(q) + AET_LOG2PI);
  }
};

struct KLLog {       // a = mu, b = log sigma
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    const T m = a[i];
    const T s = b[i];
    return (double)(exp((T)2 * s) + m * m - (T)1 - (T)2 * s);
  }
  __device__ static double finish(double sum, double n, double q) { return 0.5 * sum; }
};

struct KLLinear {    // a = mu, b = sigma
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    const T m = a[i];
    const T s = b[i];
    return (double)(s * s + m * m - (T)1 - (T)2 * log(s));
  }
  __device__ static double finish(double sum, double n, double q) { return 0.5 * sum; }
};

struct MIBound {     // a = critic on matched pairs, b = critic on shuffled pairs
  template <typename T>
  __device__ static double term(const T* a, const T* b, const T* c, long long i) {
    return (double)(a[i] - exp(b[i] - (T)1));
  }
  __device__ static double finish(double sum, double n, double q) { return sum / n; }
};

// One block per row of a row-major (n_rows, n_cols) array; blockDim.x is a multiple of 32.
template <typename T, typename Op>
__global__ void aet_row_sum(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                            T* __restrict__ out, const long long n_cols, const double q) {
  const long long base = (long long)blockIdx.x * n_cols;
  double acc = 0.0;
  for (long long j = threadIdx.x; j < n_cols; j += blockDim.x) {
    acc += Op::template term<T>(a, b, c, base + j);
  }
  __shared__ double partial[32];
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  for (int offset = 16; offset > 0; offset >>= 1) {
    acc += __shfl_down_sync(0xffffffffu, acc, offset);
  }
  if (lane == 0) {
    partial[warp] = acc;
  }
  __syncthreads();
  if (warp == 0) {
    const unsigned n_warps = blockDim.x >> 5;
    acc = lane < n_warps ? partial[lane] : 0.0;
    for (int offset = 16; offset > 0; offset >>= 1) {
      acc += __shfl_down_sync(0xffffffffu, acc, offset);
    }
    if (lane == 0) {
      out[blockIdx.x] = (T)Op::finish(acc, (double)n_cols, q);
    }
  }
}

// One warp per row (8 rows per block of 256 threads): for short rows, no block-wide sync.
template <typename T, typename Op>
__global__ void aet_row_sum_warp(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                                 T* __restrict__ out, const long long n_rows, const long long n_cols,
                                 const double q) {
  const long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= n_rows) {
    return;  // the whole warp leaves together
  }
  const unsigned lane = threadIdx.x & 31u;
  const long long base = row * n_cols;
  double acc = 0.0;
  for (long long j = lane; j < n_cols; j += 32) {
    acc += Op::template term<T>(a, b, c, base + j);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    acc += __shfl_down_sync(0xffffffffu, acc, offset);
  }
  if (lane == 0) {
    out[row] = (T)Op::finish(acc, (double)n_cols, q);
  }
}

// ---- elementwise kernels (grid-stride loops); g holds one upstream gradient per row ----

template <typename T>
__global__ void aet_reparameterize(const T* __restrict__ mu, const T* __restrict__ scale,
                                   const T* __restrict__ noise, T* __restrict__ z,
                                   const long long n, const int log_form) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)blockDim.x * gridDim.x) {
    z[i] = log_form ? mu[i] + noise[i] * exp(scale[i]) : mu[i] + noise[i] * scale[i];
  }
}

template <typename T>
__global__ void aet_reparameterize_grad(const T* __restrict__ scale, const T* __restrict__ noise,
                                        const T* __restrict__ g, T* __restrict__ g_scale,
                                        const long long n, const int log_form) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)blockDim.x * gridDim.x) {
    g_scale[i] = log_form ? g[i] * noise[i] * exp(scale[i]) : g[i] * noise[i];
  }
}

template <typename T>
__global__ void aet_bernoulli_grad(const T* __restrict__ x, const T* __restrict__ p, const T* __restrict__ g,
                                   T* __restrict__ g_x, T* __restrict__ g_p, const long long n,
                                   const long long n_cols, const int want_x, const int want_p) {
  const T eps = (T)AET_EPS;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)blockDim.x * gridDim.x) {
    const T gi = g[i / n_cols];
    const T lp = p[i] + eps;
    const T lq = (T)1 - p[i] + eps;
    if (want_p) g_p[i] = gi * (x[i] / lp - ((T)1 - x[i]) / lq);
    if (want_x) g_x[i] = gi * (log(lp) - log(lq));
  }
}

// kind: 0 = log sigma, 1 = sigma, 2 = fixed sigma (q = 1 / sigma^2; scale unused)
template <typename T>
__global__ void aet_gauss_grad(const T* __restrict__ x, const T* __restrict__ mu, const T* __restrict__ scale,
                               const T* __restrict__ g, T* __restrict__ g_x, T* __restrict__ g_mu,
                               T* __restrict__ g_scale, const long long n, const long long n_cols,
                               const int kind, const double q, const int want_x, const int want_mu,
                               const int want_scale) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)blockDim.x * gridDim.x) {
    const T gi = g[i / n_cols];
    const T d = x[i] - mu[i];
    T dm;
    T ds = (T)0;
    if (kind == 0) {
      const T w = (T)1 / exp((T)2 * scale[i]);
      dm = gi * d * w;
      ds = gi * (d * d * w - (T)1);
    } else if (kind == 1) {
      const T r = d / scale[i];
      dm = gi * r / scale[i];
      ds = gi * (r * r - (T)1) / scale[i];
    } else {
      dm = gi * d * (T)q;
    }
    if (want_mu) g_mu[i] = dm;
    if (want_x) g_x[i] = -dm;
    if (want_scale && kind != 2) g_scale[i] = ds;
  }
}

template <typename T>
__global__ void aet_kl_grad(const T* __restrict__ mu, const T* __restrict__ scale, const T* __restrict__ g,
                            T* __restrict__ g_mu, T* __restrict__ g_scale, const long long n,
                            const long long n_cols, const int log_form, const int want_mu,
                            const int want_scale) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)blockDim.x * gridDim.x) {
    const T gi = g[i / n_cols];
    if (want_mu) g_mu[i] = gi * mu[i];
    if (want_scale) {
      const T s = scale[i];
      g_scale[i] = log_form ? gi * (exp((T)2 * s) - (T)1) : gi * (s - (T)1 / s);
    }
  }
}

template <typename T>
__global__ void aet_mi_bound_grad(const T* __restrict__ g_shuffled, const T* __restrict__ g,
                                  T* __restrict__ d_joint, T* __restrict__ d_shuffled, const long long n,
                                  const int want_joint, const int want_shuffled) {
  const T w = g[0] / (T)n;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (long long)blockDim.x * gridDim.x) {
    if (want_joint) d_joint[i] = w;
    if (want_shuffled) d_shuffled[i] = -w * exp(g_shuffled[i] - (T)1);
  }
}
""" % {"log2pi": LOG2PI, "eps": EPS_FLOAT32}

_CTYPES = {"float32": "float", "float64": "double"}
_ROW_OPS = ("Bernoulli", "GaussLog", "GaussLinear", "GaussFixed", "KLLog", "KLLinear", "MIBound")
_ELEMENTWISE = ("aet_reparameterize", "aet_reparameterize_grad", "aet_bernoulli_grad", "aet_gauss_grad",
                "aet_kl_grad", "aet_mi_bound_grad")
_NAMES = tuple(f"{k}<{t}, {op}>" for k in ("aet_row_sum", "aet_row_sum_warp") for t in _CTYPES.values()
               for op in _ROW_OPS) + tuple(f"{k}<{t}>" for k in _ELEMENTWISE for t in _CTYPES.values())
#: Rows up to this length are summed by one warp each, longer ones by one block each.
_WARP_ROW_MAX = 2048
_MODULE: list[Any] = []
_BLOCK = 256


def _module() -> Any:
    if not _MODULE:
        _MODULE.append(cupy.RawModule(code=SOURCE, name_expressions=_NAMES))
    return _MODULE[0]


_FUNCTIONS: dict[tuple[int, str, str], Any] = {}


def _function(name: str, dtype: Any) -> Any:
    """The compiled kernel ``name`` for ``dtype`` on the current device (cached)."""
    key = (cupy.cuda.runtime.getDevice(), name, dtype.name)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        ctype = _CTYPES[dtype.name]
        if name.startswith("aet_row_sum"):
            base, op = name.split(":", 1)
            fn = _module().get_function(f"{base}<{ctype}, {op}>")
        else:
            fn = _module().get_function(f"{name}<{ctype}>")
        _FUNCTIONS[key] = fn
    return fn


def supports(*arrays: Any) -> bool:
    """Whether the fused kernels take these arrays: CuPy, one dtype (float32/float64), non-empty."""
    first = arrays[0]
    if type(first).__module__.split(".")[0] != "cupy" or not isinstance(first, cupy.ndarray) or first.dtype.name not in _CTYPES or first.size == 0:
        return False
    for a in arrays[1:]:
        if a is None:
            continue
        if not isinstance(a, cupy.ndarray) or a.dtype != first.dtype:
            return False
    return True


def _rows(a: Any, batched: bool) -> Any:
    """``a`` as a C-contiguous ``(n_rows, n_cols)`` array: one row per sample (or one row)."""
    a = cupy.ascontiguousarray(a)
    return a.reshape(a.shape[0], -1) if batched and a.ndim >= 1 else a.reshape(1, -1)


def _row_threads(n_cols: int) -> int:
    threads = 32
    while threads < 1024 and threads * 4 < n_cols:
        threads *= 2
    return threads


def _row_sum(op: str, a: Any, b: Any, c: Any, batched: bool, q: float = 0.0) -> Any:
    a2 = _rows(a, batched)
    b2 = _rows(b, batched)
    c2 = a2 if c is None else _rows(c, batched)
    n_rows, n_cols = a2.shape
    out = cupy.empty(n_rows, dtype=a2.dtype)
    if n_cols <= _WARP_ROW_MAX:
        kernel = _function(f"aet_row_sum_warp:{op}", a2.dtype)
        kernel(((n_rows + 7) // 8,), (256,), (a2, b2, c2, out, cupy.int64(n_rows), cupy.int64(n_cols),
                                              cupy.float64(q)))
    else:
        kernel = _function(f"aet_row_sum:{op}", a2.dtype)
        kernel((n_rows,), (_row_threads(n_cols),), (a2, b2, c2, out, cupy.int64(n_cols), cupy.float64(q)))
    return out if batched else out.reshape(())


def _grid(n: int) -> tuple[int]:
    return (max(1, min((n + _BLOCK - 1) // _BLOCK, 65536)),)


# ----------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------

def bernoulli_loglikelihood(x: Any, p: Any, batched: bool = True) -> Any:
    """``Σ x log(p+ε) + (1−x) log(1−p+ε)`` per sample (``batched``) or over all elements."""
    return _row_sum("Bernoulli", x, p, None, batched)


def gaussian_loglikelihood(x: Any, μ: Any, scale: Any = None, *, kind: str = "log", σ: float = 1.0,
                           batched: bool = True) -> Any:
    """Diagonal Gaussian log density of ``x`` per sample; ``kind`` ``"log"``, ``"linear"`` or ``"fixed"``."""
    if kind == "log":
        return _row_sum("GaussLog", x, μ, scale, batched)
    if kind == "linear":
        return _row_sum("GaussLinear", x, μ, scale, batched)
    if kind == "fixed":
        return _row_sum("GaussFixed", x, μ, None, batched, float(σ))
    raise ValueError(f"kind: expected 'log', 'linear' or 'fixed', got {kind!r}")


def gaussian_kl(μ: Any, scale: Any, *, log: bool = True, batched: bool = True) -> Any:
    """KL divergence of ``N(μ, σ²)`` to ``N(0, I)`` per sample (``scale`` is ``logσ`` when ``log``)."""
    return _row_sum("KLLog" if log else "KLLinear", μ, scale, None, batched)


def mutual_info_bound(g_joint: Any, g_shuffled: Any) -> Any:
    """``mean(g_joint) − mean(exp(g_shuffled − 1))`` as a 0-d array (equal sizes)."""
    return _row_sum("MIBound", g_joint, g_shuffled, None, False)


def reparameterize(μ: Any, scale: Any, noise: Any, *, log: bool = True) -> Any:
    """``μ + noise·exp(scale)`` (``log``) or ``μ + noise·scale``, elementwise."""
    m = cupy.ascontiguousarray(μ)
    s = cupy.ascontiguousarray(scale)
    e = cupy.ascontiguousarray(noise)
    z = cupy.empty_like(m)
    n = m.size
    _function("aet_reparameterize", m.dtype)(_grid(n), (_BLOCK,), (m, s, e, z, cupy.int64(n), cupy.int32(log)))
    return z


# ----------------------------------------------------------------------------------
# Backward: gradients of the forward values given the upstream gradient ``g``
# (``(B,)`` for per-sample values, 0-d for one sample or the MI bound)
# ----------------------------------------------------------------------------------

def _like(a: Any, want: bool) -> Any:
    return cupy.empty_like(a) if want else a


def bernoulli_backward(x: Any, p: Any, g: Any, batched: bool = True, *, want_x: bool = True,
                       want_p: bool = True) -> tuple[Any, Any]:
    """``(∂/∂x, ∂/∂p)`` of :func:`bernoulli_loglikelihood` times ``g`` (``None`` where not wanted)."""
    x2, p2 = _rows(x, batched), _rows(p, batched)
    g1 = cupy.ascontiguousarray(g, dtype=x2.dtype).reshape(-1)
    gx, gp = _like(x2, want_x), _like(p2, want_p)
    n = x2.size
    _function("aet_bernoulli_grad", x2.dtype)(
        _grid(n), (_BLOCK,), (x2, p2, g1, gx, gp, cupy.int64(n), cupy.int64(x2.shape[1]),
                              cupy.int32(want_x), cupy.int32(want_p)))
    return (gx.reshape(x.shape) if want_x else None, gp.reshape(p.shape) if want_p else None)


def gaussian_backward(x: Any, μ: Any, scale: Any, g: Any, *, kind: str = "log", σ: float = 1.0,
                      batched: bool = True, want_x: bool = True, want_mu: bool = True,
                      want_scale: bool = True) -> tuple[Any, Any, Any]:
    """``(∂/∂x, ∂/∂μ, ∂/∂scale)`` of :func:`gaussian_loglikelihood` times ``g``."""
    codes = {"log": 0, "linear": 1, "fixed": 2}
    if kind not in codes:
        raise ValueError(f"kind: expected 'log', 'linear' or 'fixed', got {kind!r}")
    x2, m2 = _rows(x, batched), _rows(μ, batched)
    s2 = m2 if scale is None else _rows(scale, batched)
    want_scale = want_scale and kind != "fixed"
    g1 = cupy.ascontiguousarray(g, dtype=x2.dtype).reshape(-1)
    gx, gm, gs = _like(x2, want_x), _like(m2, want_mu), _like(s2, want_scale)
    n = x2.size
    q = 1.0 / (float(σ) * float(σ)) if kind == "fixed" else 0.0
    _function("aet_gauss_grad", x2.dtype)(
        _grid(n), (_BLOCK,), (x2, m2, s2, g1, gx, gm, gs, cupy.int64(n), cupy.int64(x2.shape[1]),
                              cupy.int32(codes[kind]), cupy.float64(q), cupy.int32(want_x),
                              cupy.int32(want_mu), cupy.int32(want_scale)))
    return (gx.reshape(x.shape) if want_x else None, gm.reshape(μ.shape) if want_mu else None,
            gs.reshape(scale.shape) if want_scale else None)


def gaussian_kl_backward(μ: Any, scale: Any, g: Any, *, log: bool = True, batched: bool = True,
                         want_mu: bool = True, want_scale: bool = True) -> tuple[Any, Any]:
    """``(∂/∂μ, ∂/∂scale)`` of :func:`gaussian_kl` times ``g``."""
    m2, s2 = _rows(μ, batched), _rows(scale, batched)
    g1 = cupy.ascontiguousarray(g, dtype=m2.dtype).reshape(-1)
    gm, gs = _like(m2, want_mu), _like(s2, want_scale)
    n = m2.size
    _function("aet_kl_grad", m2.dtype)(
        _grid(n), (_BLOCK,), (m2, s2, g1, gm, gs, cupy.int64(n), cupy.int64(m2.shape[1]), cupy.int32(log),
                              cupy.int32(want_mu), cupy.int32(want_scale)))
    return (gm.reshape(μ.shape) if want_mu else None, gs.reshape(scale.shape) if want_scale else None)


def reparameterize_backward(scale: Any, noise: Any, g: Any, *, log: bool = True) -> tuple[Any, Any]:
    """``(∂/∂μ, ∂/∂scale)`` of :func:`reparameterize` times the elementwise ``g``."""
    s = cupy.ascontiguousarray(scale)
    e = cupy.ascontiguousarray(noise)
    g1 = cupy.ascontiguousarray(g, dtype=s.dtype)
    gs = cupy.empty_like(s)
    n = s.size
    _function("aet_reparameterize_grad", s.dtype)(_grid(n), (_BLOCK,), (s, e, g1, gs, cupy.int64(n),
                                                                        cupy.int32(log)))
    return g1, gs


def mutual_info_bound_backward(g_joint: Any, g_shuffled: Any, g: Any, *, want_joint: bool = True,
                               want_shuffled: bool = True) -> tuple[Any, Any]:
    """``(∂/∂g_joint, ∂/∂g_shuffled)`` of :func:`mutual_info_bound` times the scalar ``g``."""
    a = cupy.ascontiguousarray(g_joint)
    b = cupy.ascontiguousarray(g_shuffled)
    g1 = cupy.ascontiguousarray(g, dtype=a.dtype).reshape(-1)
    da, db = _like(a, want_joint), _like(b, want_shuffled)
    n = a.size
    _function("aet_mi_bound_grad", a.dtype)(_grid(n), (_BLOCK,), (b, g1, da, db, cupy.int64(n),
                                                                  cupy.int32(want_joint), cupy.int32(want_shuffled)))
    return (da.reshape(g_joint.shape) if want_joint else None,
            db.reshape(g_shuffled.shape) if want_shuffled else None)
