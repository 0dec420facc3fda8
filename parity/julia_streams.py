r"""Julia's random streams, written for the parity oracle from Julia's published algorithms.

The parity cases record the random draws the reference makes after
``Random.seed!(julia_seed)``: ``randn(Float32, L, B)`` and ``shuffle(1:B)`` on the
task-local generator, and ``shuffle(MersenneTwister(k), 1:B)`` for a ``seed = k``
keyword.  This module reproduces those streams bit for bit in plain Python (integers
for the generators, IEEE doubles for the ziggurat), so that the cases' draws come
from a second implementation, written separately from ``autoencoder_toolkit``'s own
(:mod:`autoencoder_toolkit.random.juliarng`), which it never imports.  The runner
compares the two draw for draw.

Generators
----------
:class:`Xoshiro`
    Xoshiro256++ (``Xoshiro(seed)``; ``Random.seed!(seed)`` puts the task-local
    generator in the same state).  Seeding: the seed is split into 32-bit words,
    least significant first, until nothing is left (``0`` is one zero word); the
    SHA-256 digest of those words as little-endian bytes, read as four little-endian
    64-bit words, is the state ``(s0, s1, s2, s3)``.  One step returns
    ``rotl(s0 + s3, 23) + s0`` (mod ``2^64``) and updates
    ``t = s1 << 17; s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = rotl(s3, 45)``.
    Its 52-bit draw is ``u >> 12``; its ``rand()`` is ``(u >> 11) * 2^-53``.
:class:`MersenneTwister`
    dSFMT-19937 (191 128-bit words plus a 128-bit "lung").  Seeding: the same 32-bit
    words go to dSFMT's ``init_by_array`` directly (Julia up to 1.10) or through
    SHA-256, as eight little-endian 32-bit words (Julia 1.11 and 1.12).  Its outputs
    are doubles in ``[1, 2)``; the 52-bit draw is the mantissa of the next one and
    ``rand()`` is the next one minus 1.  Julia refills a cache of 1002 doubles at a
    time, which does not change the sequence.

Draws
-----
:func:`randn`
    Julia's ziggurat (Marsaglia and Tsang, 256 strips).  With ``r`` a 52-bit draw,
    ``a = r >> 1``, ``i = a & 0xFF`` and ``x = ±a·w_i`` (minus when bit 0 of ``r`` is
    set): return ``x`` when ``a < k_i``.  Otherwise, for ``i = 0`` (the tail beyond
    ``R = 3.6541528853610088``) repeat ``ξ = -ℓ(u1)·(1/R)``, ``η = -ℓ(u2)`` until
    ``2η > ξ²`` and return ``±(R + ξ)`` (minus when bit 8 of ``a`` is set), with
    ``ℓ(u) = log1p(-u)`` from Julia 1.11 and ``log(u)`` before; for
    ``i > 0`` return ``x`` when ``(f_{i-1} - f_i)·u + f_i < exp(-x²/2)``; else start
    over.  The tables ``k, w, f`` are computed here at 256-bit precision
    (:func:`ziggurat_tables`), as Julia's own test suite recomputes its literals.
:func:`randn_float32`
    ``randn(Float32, dims...)``: each double draw rounded to the nearest float32,
    filled in Julia's column-major order, which is the C order of the reversed
    (batch-first) shape this function takes.
:func:`randperm`, :func:`shuffle`
    Fisher-Yates with masked rejection: an index draw in ``0..i-1`` is
    ``b & mask`` for a 52-bit draw ``b``, repeated until it is at most ``i - 1``.
    ``randperm`` (every version) and ``shuffle`` from Julia 1.11 run ``i = 2..n``
    forward with ``mask = 3`` doubling (``mask = 2mask + 1``) after ``i == mask + 1``;
    ``shuffle`` up to 1.10 runs ``i = n..2`` backward from ``mask = nextpow(2, n) - 1``,
    halving the mask when ``mask >> 1 == i``.  Results here are 0-based.

Scope: seeds ``0 <= seed < 2^31`` (others are refused), Julia ``"1.10"`` (also 1.9) and
``"1.11"`` (also 1.12), scalar draws and ``randn(Float32, ...)`` arrays (Julia fills a
``Float64`` array of 13 or more entries from a ``MersenneTwister`` in another order; the
cases never draw one).  Julia computes ``log`` and ``exp`` with its own functions; this
module uses the C library's.  They can differ in the last bit, which changes a draw only
if it decides a rejection test exactly at its boundary or survives the rounding to
float32, neither of which the published values nor the cases show.
"""
from __future__ import annotations

import hashlib
import math
import struct
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

import numpy as np

__all__ = [
    "JULIA_VERSIONS", "SEED_LIMIT", "Xoshiro", "MersenneTwister", "seed_global",
    "seed_words", "ziggurat_tables", "randn", "randn_float32", "randperm", "shuffle",
    "replay",
]

JULIA_VERSIONS = ("1.10", "1.11")
SEED_LIMIT = 2 ** 31

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF
_M52 = (1 << 52) - 1

ZIGGURAT_R = 3.6541528853610087963519472518   # the normal tail starts here (a double)
ZIGGURAT_INV_R = 1.0 / ZIGGURAT_R               # Julia's inv(ZIGGURAT_R), a double


def _check_julia(julia: str) -> str:
    version = {"1.9": "1.10", "1.10": "1.10", "1.11": "1.11", "1.12": "1.11"}.get(str(julia))
    if version is None:
        raise ValueError(f"julia: expected one of 1.9, 1.10, 1.11, 1.12, got {julia!r}")
    return version


def seed_words(seed: int) -> list[int]:
    """Julia's ``make_seed(seed)``: 32-bit words of ``seed``, least significant first.

    ``0 <= seed < 2^31`` (the range whose seeding is the same in Julia 1.9 to 1.12).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed: expected 0 <= seed < 2^31, got {seed}")
    words = []
    while True:
        words.append(seed & _M32)
        seed >>= 32
        if seed == 0:
            return words


def _sha256_of_words(words: Sequence[int]) -> bytes:
    return hashlib.sha256(b"".join(int(w).to_bytes(4, "little") for w in words)).digest()


# ---------------------------------------------------------------------------
# Xoshiro256++
# ---------------------------------------------------------------------------

def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (64 - k))) & _M64


class Xoshiro:
    """Julia's ``Xoshiro(seed)`` (and the task-local generator after ``Random.seed!(seed)``)."""

    def __init__(self, seed: int):
        digest = _sha256_of_words(seed_words(seed))
        self.state = [int.from_bytes(digest[8 * i:8 * i + 8], "little") for i in range(4)]

    def next_u64(self) -> int:
        """``rand(rng, UInt64)``: the next output, then one step of the state."""
        s0, s1, s2, s3 = self.state
        out = (_rotl((s0 + s3) & _M64, 23) + s0) & _M64
        t = (s1 << 17) & _M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        self.state = [s0, s1, s2, s3]
        return out

    def bits52(self) -> int:
        """The 52-bit draw of ``randn`` and of the index draws: the top 52 bits."""
        return self.next_u64() >> 12

    def rand(self) -> float:
        """``rand(rng)``: a double in ``[0, 1)`` from the top 53 bits."""
        return (self.next_u64() >> 11) * 2.0 ** -53


def seed_global(seed: int) -> Xoshiro:
    """Julia's global (task-local) generator right after ``Random.seed!(seed)``."""
    return Xoshiro(seed)


# ---------------------------------------------------------------------------
# dSFMT-19937 (MersenneTwister)
# ---------------------------------------------------------------------------

_N = 191                       # 128-bit words of the state, the lung apart
_POS1 = 117
_SL1 = 19
_SR = 12
_MSK = (0x000FFAFFFFFFFB3F, 0x000FFDFFFC90FFFD)
_FIX = (0x90014964B32F4329, 0x3B8D12AC548A7C7A)
_PCV = (0x3D84E1AC0DC82880, 0x0000000000000001)
_LOW_MASK = 0x000FFFFFFFFFFFFF
_HIGH_CONST = 0x3FF0000000000000


def _init_by_array(key: Sequence[int]) -> list[int]:
    """dSFMT's ``init_by_array``: the state as ``2*(N+1)`` 64-bit words (lung last).

    The state is read as ``4*(N+1)`` 32-bit words ``v`` (little-endian halves of the
    64-bit words), filled with ``0x8b8b8b8b`` and mixed in three passes with
    ``g1(y) = (y ^ (y >> 27))·1664525`` and ``g2(y) = (y ^ (y >> 27))·1566083941``
    (mod ``2^32``), lag 11 and mid ``(size - 11) // 2``; then every output word is
    forced into ``[1, 2)`` and the lung's period certificate is checked.
    """
    size = (_N + 1) * 4
    lag = 11
    mid = (size - lag) // 2
    v = [0x8B8B8B8B] * size
    key = [int(k) & _M32 for k in key]
    count = max(len(key) + 1, size)

    def g1(y):
        return ((y ^ (y >> 27)) * 1664525) & _M32

    def g2(y):
        return ((y ^ (y >> 27)) * 1566083941) & _M32

    r = g1(v[0] ^ v[mid % size] ^ v[(size - 1) % size])
    v[mid % size] = (v[mid % size] + r) & _M32
    r = (r + len(key)) & _M32
    v[(mid + lag) % size] = (v[(mid + lag) % size] + r) & _M32
    v[0] = r
    count -= 1
    i, j = 1, 0
    while j < count:
        r = g1(v[i] ^ v[(i + mid) % size] ^ v[(i + size - 1) % size])
        v[(i + mid) % size] = (v[(i + mid) % size] + r) & _M32
        r = (r + (key[j] if j < len(key) else 0) + i) & _M32
        v[(i + mid + lag) % size] = (v[(i + mid + lag) % size] + r) & _M32
        v[i] = r
        i = (i + 1) % size
        j += 1
    for _ in range(size):
        r = g2((v[i] + v[(i + mid) % size] + v[(i + size - 1) % size]) & _M32)
        v[(i + mid) % size] ^= r
        r = (r - i) & _M32
        v[(i + mid + lag) % size] ^= r
        v[i] = r
        i = (i + 1) % size
    words = [v[2 * k] | (v[2 * k + 1] << 32) for k in range(2 * (_N + 1))]
    for k in range(2 * _N):
        words[k] = (words[k] & _LOW_MASK) | _HIGH_CONST
    inner = ((words[2 * _N] ^ _FIX[0]) & _PCV[0]) ^ ((words[2 * _N + 1] ^ _FIX[1]) & _PCV[1])
    shift = 32
    while shift > 0:
        inner ^= inner >> shift
        shift >>= 1
    if inner & 1 == 0:
        words[2 * _N + 1] ^= 1
    return words


class MersenneTwister:
    """Julia's ``MersenneTwister(seed)`` (dSFMT-19937) as seeded by Julia ``julia``.

    ``MersenneTwister.from_key(words)`` seeds with an explicit ``init_by_array`` key.
    """

    def __init__(self, seed: int, julia: str = "1.11"):
        words = seed_words(seed)
        if _check_julia(julia) == "1.11":
            digest = _sha256_of_words(words)
            words = list(struct.unpack("<8I", digest))
        self._start(words)

    @classmethod
    def from_key(cls, key: Sequence[int]) -> "MersenneTwister":
        mt = cls.__new__(cls)
        mt._start(key)
        return mt

    def _start(self, key: Sequence[int]) -> None:
        words = _init_by_array(key)
        self._state = words[:2 * _N]
        self._lung = (words[2 * _N], words[2 * _N + 1])
        self._out: list[int] = []
        self._pos = 0

    def _refill(self) -> None:
        """One pass of the recursion over the whole state; its words are the next 382 outputs.

        For each 128-bit word ``a`` (in order), with ``b`` the word ``POS1`` places
        ahead (already renewed when that wraps around) and the lung ``(l0, l1)``:
        ``l0' = (a0 << 19) ^ swap32(l1) ^ b0``, ``l1' = (a1 << 19) ^ swap32(l0) ^ b1``,
        ``a0' = (l0' >> 12) ^ (l0' & MSK1) ^ a0``, ``a1' = (l1' >> 12) ^ (l1' & MSK2) ^ a1``
        where ``swap32`` exchanges the 32-bit halves of a 64-bit word.
        """
        s = self._state
        l0, l1 = self._lung
        m1, m2 = _MSK
        for i in range(_N):
            a0, a1 = s[2 * i], s[2 * i + 1]
            k = (i + _POS1) % _N
            b0, b1 = s[2 * k], s[2 * k + 1]
            n0 = ((a0 << _SL1) & _M64) ^ (l1 >> 32) ^ ((l1 << 32) & _M64) ^ b0
            n1 = ((a1 << _SL1) & _M64) ^ (l0 >> 32) ^ ((l0 << 32) & _M64) ^ b1
            l0, l1 = n0, n1
            s[2 * i] = (n0 >> _SR) ^ (n0 & m1) ^ a0
            s[2 * i + 1] = (n1 >> _SR) ^ (n1 & m2) ^ a1
        self._lung = (l0, l1)
        self._out = list(s)
        self._pos = 0

    def next_word(self) -> int:
        """The bit pattern of the next double in ``[1, 2)``."""
        if self._pos >= len(self._out):
            self._refill()
        w = self._out[self._pos]
        self._pos += 1
        return w

    def bits52(self) -> int:
        """The 52-bit draw: the mantissa of the next double in ``[1, 2)``."""
        return self.next_word() & _M52

    def rand(self) -> float:
        """``rand(rng)``: the next double in ``[1, 2)`` minus 1."""
        return struct.unpack("<d", self.next_word().to_bytes(8, "little"))[0] - 1.0


# ---------------------------------------------------------------------------
# randn: the ziggurat
# ---------------------------------------------------------------------------

def _to_double(x) -> float:
    """The double nearest to an mpmath number (ties to even): exact rational rounding."""
    man, exp = x.man_exp
    return float(Fraction(int(man)) * Fraction(2) ** int(exp))


def _trunc(x) -> int:
    man, exp = x.man_exp
    man, exp = int(man), int(exp)
    return man << exp if exp >= 0 else man >> -exp


@lru_cache(maxsize=1)
def ziggurat_tables() -> tuple[tuple[int, ...], tuple[float, ...], tuple[float, ...]]:
    """``(k, w, f)``, the 256-entry tables of Julia's normal ziggurat (0-based).

    With ``R`` the tail start (the decimal of the module's ``ZIGGURAT_R`` to 78 digits),
    ``φ(x) = exp(-x²/2)``, the strip area ``v = R·φ(R) + sqrt(π/2)·erfc(R/√2)`` and
    ``M = 2^51`` (a draw keeps 51 bits beside the sign), computed at 256-bit precision:

    * ``w_255 = R/M``, ``f_255 = φ(R)``; ``k_0 = trunc(R·φ(R)/v·M)``, ``w_0 = v/φ(R)/M``,
      ``f_0 = 1``;
    * for ``i = 254 .. 1``, from ``x_255 = R``: ``x_i = sqrt(-2·log(v/x_{i+1} + f_{i+1}))``,
      ``k_{i+1} = trunc(x_i/x_{i+1}·M)``, ``w_i = x_i/M``, ``f_i = φ(x_i)``;
    * ``k_1 = 0``.

    ``w`` and ``f`` are rounded to the nearest double.
    """
    import mpmath

    ctx = mpmath.MPContext()  # a private context: 256 bits, rounding to nearest
    ctx.prec = 256
    mpf = ctx.mpf
    r = mpf("3.65415288536100879635194725185604664812733315920964488827246397029393565706474")
    m = mpf(2) ** 51
    area = r * ctx.exp(-r * r / 2) + ctx.erfc(r / ctx.sqrt(2)) * ctx.sqrt(ctx.pi / 2)
    k = [0] * 256
    w = [mpf(0)] * 256
    f = [mpf(0)] * 256
    w[255] = r / m
    f[255] = ctx.exp(mpf(-0.5) * r * r)
    k[0] = _trunc(r * f[255] / area * m)
    w[0] = area / f[255] / m
    f[0] = mpf(1)
    x1 = r
    for i in range(254, 0, -1):
        x = ctx.sqrt(mpf(-2.0) * ctx.log(area / x1 + f[i + 1]))
        k[i + 1] = _trunc(x / x1 * m)
        w[i] = x / m
        f[i] = ctx.exp(mpf(-0.5) * x * x)
        x1 = x
    k[1] = 0
    return tuple(k), tuple(_to_double(a) for a in w), tuple(_to_double(a) for a in f)


def _log(u: float) -> float:
    return math.log(u) if u > 0.0 else -math.inf


def _log1m(u: float) -> float:
    return math.log1p(-u)


def randn(rng, julia: str = "1.11") -> float:
    """``randn(rng)``: one standard normal double (Julia's ziggurat, see the module doc).

    The tail's uniforms enter as ``log(u)`` up to Julia 1.10 and as ``log1p(-u)`` from
    1.11 (JuliaLang/julia pull request 51890, which changed the stream of the rare draws
    beyond ``R``).
    """
    k, w, f = ziggurat_tables()
    log_u = _log if _check_julia(julia) == "1.10" else _log1m
    while True:
        r = rng.bits52()
        a = r >> 1
        i = a & 0xFF
        x = float(-a if r & 1 else a) * w[i]
        if a < k[i]:
            return x
        if i == 0:
            while True:
                xi = -ZIGGURAT_INV_R * log_u(rng.rand())
                eta = -log_u(rng.rand())
                if eta + eta > xi * xi:
                    return -ZIGGURAT_R - xi if (a >> 8) & 1 else ZIGGURAT_R + xi
        if (f[i - 1] - f[i]) * rng.rand() + f[i] < math.exp(-0.5 * x * x):
            return x


def randn_float32(rng, shape: Sequence[int], julia: str = "1.11") -> np.ndarray:
    """``randn(Float32, reverse(shape)...)`` as a C-order float32 array of ``shape``.

    A Julia ``(L, B)`` array is the memory of a batch-first ``(B, L)`` array, so the
    draws fill ``shape`` in C order; each is the nearest float32 to a double draw.
    """
    shape = tuple(int(s) for s in np.atleast_1d(np.asarray(shape, dtype=np.int64)))
    if any(s < 0 for s in shape):
        raise ValueError(f"shape: expected non-negative sizes, got {shape}")
    n = int(np.prod(shape, dtype=np.int64))
    return np.array([randn(rng, julia) for _ in range(n)], dtype=np.float64).astype(np.float32).reshape(shape)


# ---------------------------------------------------------------------------
# randperm and shuffle
# ---------------------------------------------------------------------------

def _index(rng, i: int, mask: int) -> int:
    """A uniform index in ``0..i-1``: masked 52-bit draws, rejected until ``<= i - 1``."""
    while True:
        b = rng.bits52() & mask
        if b <= i - 1:
            return b


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or int(n) < 0:
        raise ValueError(f"n: expected a non-negative integer, got {n!r}")
    return int(n)


def randperm(rng, n: int) -> np.ndarray:
    """``randperm(rng, n) - 1``: a random permutation of ``0..n-1`` (every Julia version)."""
    n = _check_n(n)
    a = [0] * n
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    a[0] = 1
    mask = 3
    for i in range(2, n + 1):
        j = 1 + _index(rng, i, mask)
        if i != j:
            a[i - 1] = a[j - 1]
        a[j - 1] = i
        if i == mask + 1:
            mask = 2 * mask + 1
    return np.asarray(a, dtype=np.int64) - 1


def shuffle(rng, n: int, julia: str = "1.11") -> np.ndarray:
    """``shuffle(rng, 1:n) - 1`` as Julia ``julia`` computes it (0-based)."""
    n = _check_n(n)
    a = list(range(1, n + 1))
    if _check_julia(julia) == "1.11":
        mask = 3
        for i in range(2, n + 1):
            j = 1 + _index(rng, i, mask)
            a[i - 1], a[j - 1] = a[j - 1], a[i - 1]
            if i == mask + 1:
                mask = 2 * mask + 1
    elif n > 1:
        mask = (1 << (n - 1).bit_length()) - 1   # nextpow(2, n) - 1
        for i in range(n, 1, -1):
            if mask >> 1 == i:
                mask >>= 1
            j = 1 + _index(rng, i, mask)
            a[i - 1], a[j - 1] = a[j - 1], a[i - 1]
    return np.asarray(a, dtype=np.int64) - 1


# ---------------------------------------------------------------------------
# The draws of a case
# ---------------------------------------------------------------------------

def replay(draws: Sequence, julia_seed: int, julia: str = "1.11") -> tuple[dict, Xoshiro]:
    """The values of a case's list of draws, and the global generator after them.

    ``draws`` is the case's ``draws`` list: ``{"name", "kind": "randn", "shape"}`` (noise
    from the global generator, batch-first shape) or ``{"name", "kind": "shuffle",
    "n"}`` (``shuffle(1:n)`` on the global generator, or on a fresh
    ``MersenneTwister(seed)`` when the entry has ``"rng": {"type": "MersenneTwister",
    "seed": seed}``), in the reference's order, after ``Random.seed!(julia_seed)``.
    Values: float32 arrays and 0-based int64 permutations.
    """
    rng = seed_global(int(julia_seed))
    values: dict = {}
    for d in draws:
        kind = d.get("kind")
        if kind == "randn":
            values[d["name"]] = randn_float32(rng, tuple(d["shape"]), julia=julia)
        elif kind == "shuffle":
            spec = d.get("rng")
            if spec:
                if spec.get("type") != "MersenneTwister":
                    raise ValueError(f"draw {d['name']!r}: unknown generator {spec!r}; expected "
                                     "MersenneTwister")
                source = MersenneTwister(int(spec["seed"]), julia=julia)
            else:
                source = rng
            values[d["name"]] = shuffle(source, int(d["n"]), julia=julia)
        else:
            raise ValueError(f"draw {d.get('name')!r}: unknown kind {kind!r}; expected randn or shuffle")
    return values, rng
