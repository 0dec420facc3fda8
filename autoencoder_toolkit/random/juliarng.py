"""Random streams that reproduce Julia's ``Random`` standard library bit for bit.

AutoEncoderToolkit.jl draws its reparameterisation noise with ``randn(Float32, L, B)``
and its latent permutations with ``shuffle(rng, 1:B)``.  This module re-implements the
generators and the sampling algorithms behind those calls, so that a Python run seeded
like a Julia run sees the very same numbers.

Generators
----------
:class:`MersenneTwister`
    dSFMT-19937 (the double-precision SIMD-oriented Fast Mersenne Twister, version
    2.2.x) with Julia's seeding and Julia's cache of 1002 doubles.
:class:`Xoshiro`
    Xoshiro256++ seeded from the SHA-256 digest of the seed.
:class:`TaskLocalRNG`, :func:`seed_`
    The state that ``Random.seed!(seed)`` gives Julia's global (task-local) generator;
    for an integer seed it is the stream of ``Xoshiro(seed)``.

Sampling functions
------------------
:func:`rand`, :func:`randn`, :func:`randperm`, :func:`randcycle`, :func:`shuffle` and
:func:`shuffle_` take one of these streams first, like their Julia namesakes.  Arrays
are returned in C order with the dimensions as given; because Julia fills arrays in
column-major order, a Julia array of size ``(L, B)`` holds the same numbers, in the
same memory order, as the C-order array of shape ``(B, L)`` returned here for
``dims=(B, L)``.  Indices handed back to Python are 0-based.

Versions
--------
Every stream carries a ``julia`` version (``"1.10"`` or ``"1.11"``; ``"1.9"``, ``"1.12"``
and ``"1.13"`` are accepted as aliases).  Three things differ between the two behaviours:

* ``MersenneTwister(seed)``: up to 1.10 the 32-bit words of the seed initialise dSFMT
  directly; from 1.11 the SHA-256 digest of those words does.
* ``shuffle!``: up to 1.10 a backward Fisher-Yates pass with a shrinking bit mask;
  from 1.11 a forward pass with a growing mask (so that ``shuffle(rng, 1:n)`` equals
  ``randperm(rng, n)``).
* the tail of the normal sampler: ``log(u)`` up to 1.10, ``log1p(-u)`` from 1.11
  (it only affects the rare draws beyond 3.654, about one in four thousand).

Julia 1.13 routes ``Random.seed!(rng, seed)`` through a new internal generator,
``Random.SeedHasher`` (JuliaLang/julia pull request 51533, "Random: allow seeding from an
RNG"): every RNG is seeded from a ``SeedHasher(seed)`` stream, and the seed's bytes are
hashed by ``Random.hash_seed(seed, ctx)`` into a SHA-256 context.  The bytes of an
integer seed (its little-endian 32-bit words) and their SHA-256 digest are those of 1.11,
and the digest is what ``Xoshiro(seed)``, ``Random.seed!(seed)`` and
``MersenneTwister(seed)`` start from, so in 1.13 they draw exactly as in 1.11 and 1.12:
``julia="1.13"`` is the 1.11 behaviour, checked against the values Julia's 1.13-era
docstrings publish.  Julia's development line after 1.13 replaces the SHA-256 stage of
``SeedHasher`` by M. E. O'Neill's ``seed_seq_fe`` mixer (pull request 60206, "Random:
faster seed hashing"), which changes every seeded stream; no release ships it and Julia
publishes no values for it yet, so later versions are refused.

Seeds are non-negative integers.  Julia 1.10 rejects negative seeds while 1.11 accepts
them with a different hash, so they are refused here.  For non-negative seeds of any
size both behaviours split the seed into little-endian 32-bit words, so those are all
supported.

Caveats
-------
* The global stream returned by :func:`seed_` matches Julia only as long as nothing
  else draws from Julia's global generator in between (in Julia 1.9, spawning a task
  also advances it by four draws; 1.10 and later leave it untouched).
* The rare rejection branches of the normal sampler evaluate ``exp``, ``log`` or
  ``log1p`` with the platform's C library, whereas Julia uses its own implementations;
  the two agree to within one unit in the last place, so a difference could only show
  if a comparison fell within that margin.
* Julia fills ``Array{Float64}`` through bulk paths that are not a sequence of scalar
  draws (dSFMT's array fill for large ``MersenneTwister`` requests, an eight-lane
  multi-stream generator for ``Xoshiro`` requests of eight values or more, and a bulk
  first pass in ``randn!``); :func:`rand` and :func:`randn` with ``dtype=float64``
  reproduce those paths.  ``Float32`` normal arrays are filled value by value in every
  version, as in Julia.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Iterable, Sequence, Union

import numpy as np

from .ziggurat_tables import FI, KI, WI, ZIGGURAT_NOR_R

__all__ = [
    "ACCEPTED_VERSIONS",
    "DEFAULT_JULIA",
    "JuliaRNG",
    "MersenneTwister",
    "TaskLocalRNG",
    "Xoshiro",
    "rand",
    "randcycle",
    "randn",
    "randperm",
    "seed_",
    "shuffle",
    "shuffle_",
]

# --------------------------------------------------------------------------------------
# versions and seeds
# --------------------------------------------------------------------------------------

_VERSION_ALIASES = {"1.9": "1.10", "1.10": "1.10", "1.11": "1.11", "1.12": "1.11", "1.13": "1.11"}
#: The values accepted for the ``julia=`` argument.
ACCEPTED_VERSIONS: tuple[str, ...] = tuple(_VERSION_ALIASES)
#: The behaviour used when ``julia=`` is not given.
DEFAULT_JULIA = "1.11"


def _normalize_julia(julia: Any) -> str:
    """Map an accepted version string to ``"1.10"`` or ``"1.11"``."""
    if isinstance(julia, str) and julia.strip() in _VERSION_ALIASES:
        return _VERSION_ALIASES[julia.strip()]
    raise ValueError(
        f"julia={julia!r} is not supported; accepted versions are "
        + ", ".join(repr(v) for v in ACCEPTED_VERSIONS)
        + " ('1.9' behaves as '1.10', '1.12' and '1.13' as '1.11'; Julia's development line after 1.13 "
        "seeds through a different SeedHasher whose streams Julia has not published yet)"
    )


def _check_seed(seed: Any) -> int:
    """Validate a seed and return it as a Python int."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, got {type(seed).__name__}")
    value = int(seed)
    if value < 0:
        raise ValueError(
            f"seed={value} is negative: Julia 1.10 rejects negative seeds and Julia 1.11 "
            "hashes them differently, so they are not supported; use a seed >= 0"
        )
    return value


def _seed_words(seed: int) -> list[int]:
    """The seed as little-endian 32-bit words, least significant first (0 is one word)."""
    words = [seed & 0xFFFFFFFF]
    seed >>= 32
    while seed:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
    return words


def _seed_digest(seed: int) -> bytes:
    """SHA-256 of the seed's 32-bit words written little-endian."""
    data = b"".join(w.to_bytes(4, "little") for w in _seed_words(seed))
    return hashlib.sha256(data).digest()


def _check_count(n: Any, name: str = "n") -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {type(n).__name__}")
    value = int(n)
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _check_dims(dims: tuple[Any, ...]) -> tuple[int, ...]:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    return tuple(_check_count(d, "dims") for d in dims)


_U64 = np.uint64
_M64 = (1 << 64) - 1
_M52 = (1 << 52) - 1
_TWO_M53 = 2.0 ** -53

# --------------------------------------------------------------------------------------
# dSFMT-19937
# --------------------------------------------------------------------------------------

_N = 191  # 128-bit words of state
_POS1 = 117
_SL1 = 19
_SR = 12
_MSK = np.array([0x000FFAFFFFFFFB3F, 0x000FFDFFFC90FFFD], dtype=_U64)
_FIX = (0x90014964B32F4329, 0x3B8D12AC548A7C7A)
_PCV = (0x3D84E1AC0DC82880, 0x0000000000000001)
_LOW_MASK = 0x000FFFFFFFFFFFFF
_HIGH_CONST = 0x3FF0000000000000
_MIN_ARRAY = 2 * _N  # smallest bulk request dSFMT accepts, in doubles (382)
_LAG = _N - _POS1  # new words that can be computed at once (74)
_CACHE = 1002  # doubles in MersenneTwister's cache

_S19 = _U64(_SL1)
_S12 = _U64(_SR)
_S32 = _U64(32)


def _swap_rot(words: np.ndarray) -> np.ndarray:
    """The lung permutation: exchange the two 64-bit halves and rotate each by 32 bits."""
    rotated = (words >> _S32) | (words << _S32)
    return rotated[..., ::-1]


class _DSFMT:
    """State of dSFMT-19937: the last ``N`` 128-bit words and the 'lung' word.

    Words are stored as pairs of little-endian ``uint64`` (shape ``(N, 2)``); each
    generated word yields two doubles in [1, 2), low half first.  The recursion for
    word ``t`` reads words ``t - N`` and ``t - N + POS1`` and the running lung, so up to
    ``N - POS1 = 74`` consecutive words depend only on earlier words; within such a
    block the lung recurrence ``lung_t = A_t ^ P(lung_{t-1})`` (``P`` an involution) is
    a prefix XOR once every other term is passed through ``P``.
    """

    __slots__ = ("hist", "lung")

    def __init__(self, hist: np.ndarray, lung: np.ndarray) -> None:
        self.hist = hist
        self.lung = lung

    @classmethod
    def _from_u32(cls, u32: list[int]) -> "_DSFMT":
        words = [u32[2 * i] | (u32[2 * i + 1] << 32) for i in range((_N + 1) * 2)]
        for i in range(2 * _N):
            words[i] = (words[i] & _LOW_MASK) | _HIGH_CONST
        lung0, lung1 = words[2 * _N], words[2 * _N + 1]
        inner = ((lung0 ^ _FIX[0]) & _PCV[0]) ^ ((lung1 ^ _FIX[1]) & _PCV[1])
        if bin(inner).count("1") % 2 == 0:
            lung1 ^= 1  # the lowest set bit of PCV is bit 0 of the second half
        hist = np.array(words[: 2 * _N], dtype=_U64).reshape(_N, 2)
        return cls(hist, np.array([lung0, lung1], dtype=_U64))

    @classmethod
    def init_by_array(cls, key: Sequence[int]) -> "_DSFMT":
        """dSFMT's ``init_by_array`` for a key of 32-bit words."""
        size = (_N + 1) * 4
        lag = 11
        mid = (size - lag) // 2
        m = 0xFFFFFFFF
        st = [0x8B8B8B8B] * size
        key = [int(k) & m for k in key]
        length = len(key)
        count = max(length + 1, size)

        def mix1(x: int) -> int:
            return ((x ^ (x >> 27)) * 1664525) & m

        def mix2(x: int) -> int:
            return ((x ^ (x >> 27)) * 1566083941) & m

        r = mix1(st[0] ^ st[mid % size] ^ st[(size - 1) % size])
        st[mid % size] = (st[mid % size] + r) & m
        r = (r + length) & m
        st[(mid + lag) % size] = (st[(mid + lag) % size] + r) & m
        st[0] = r
        count -= 1
        i = 1
        for j in range(count):
            r = mix1(st[i] ^ st[(i + mid) % size] ^ st[(i + size - 1) % size])
            st[(i + mid) % size] = (st[(i + mid) % size] + r) & m
            r = (r + (key[j] if j < length else 0) + i) & m
            st[(i + mid + lag) % size] = (st[(i + mid + lag) % size] + r) & m
            st[i] = r
            i = (i + 1) % size
        for _ in range(size):
            r = mix2((st[i] + st[(i + mid) % size] + st[(i + size - 1) % size]) & m)
            st[(i + mid) % size] ^= r
            r = (r - i) & m
            st[(i + mid + lag) % size] ^= r
            st[i] = r
            i = (i + 1) % size
        return cls._from_u32(st)

    @classmethod
    def init_gen_rand(cls, seed: int) -> "_DSFMT":
        """dSFMT's ``init_gen_rand`` for a 32-bit seed (not used by Julia)."""
        m = 0xFFFFFFFF
        st = [seed & m]
        for i in range(1, (_N + 1) * 4):
            prev = st[-1]
            st.append((1812433253 * (prev ^ (prev >> 30)) + i) & m)
        return cls._from_u32(st)

    def copy(self) -> "_DSFMT":
        return _DSFMT(self.hist.copy(), self.lung.copy())

    def generate(self, nwords: int) -> np.ndarray:
        """Advance by ``nwords`` words; return their ``2 * nwords`` raw doubles as uint64."""
        work = np.empty((_N + nwords, 2), dtype=_U64)
        work[:_N] = self.hist
        lung = self.lung
        for k in range(0, nwords, _LAG):
            size = min(_LAG, nwords - k)
            a = work[k:k + size]
            b = work[k + _POS1:k + _POS1 + size]
            terms = (a << _S19) ^ b
            terms[1::2] = _swap_rot(terms[1::2])
            acc = np.bitwise_xor.accumulate(terms, axis=0)
            acc ^= _swap_rot(lung)
            acc[1::2] = _swap_rot(acc[1::2])  # acc now holds lung_t for every t
            work[_N + k:_N + k + size] = (acc >> _S12) ^ (acc & _MSK) ^ a
            lung = acc[-1].copy()
        self.hist = work[nwords:].copy()
        self.lung = lung
        return work[_N:].reshape(-1)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _DSFMT) and np.array_equal(self.hist, other.hist)
                and np.array_equal(self.lung, other.lung))


# --------------------------------------------------------------------------------------
# Xoshiro256++
# --------------------------------------------------------------------------------------

def _xoshiro_block(state: tuple[int, int, int, int], n: int) -> tuple[list[int], tuple[int, int, int, int]]:
    """``n`` outputs of Xoshiro256++ from ``state`` and the state after them."""
    s0, s1, s2, s3 = state
    m = _M64
    out = [0] * n
    for i in range(n):
        t = (s0 + s3) & m
        out[i] = ((((t << 23) | (t >> 41)) & m) + s0) & m
        t = (s1 << 17) & m
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & m
    return out, (s0, s1, s2, s3)


# multipliers that turn parent draws into the lane states of Julia's bulk generator
_FORK = (0x02011CE34BCE797F, 0x5A94851FB48A6E05, 0x3688CF5D48899FA7, 0x867B4BB4C42E5661)
_LANES = 8


# --------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------

class JuliaRNG:
    """Base class of the Julia-compatible streams.

    A stream is a sequence of *units*: raw 64-bit draws, one per scalar Julia call such
    as ``rand(rng)``, ``rand(rng, UInt52Raw())`` or the first draw of ``randn(rng)``.
    Subclasses provide the units and their conversions; the sampling algorithms live in
    the module functions.  Every stream carries ``julia``, the behaviour it reproduces
    (``"1.10"`` or ``"1.11"``).
    """

    _shift52 = 0  # right shift that turns a unit into Julia's 52-bit draw
    seed: int | None
    _julia: str

    @property
    def julia(self) -> str:
        """The Julia behaviour reproduced: ``"1.10"`` (1.9, 1.10) or ``"1.11"`` (1.11 to 1.13)."""
        return self._julia

    # --- unit stream ------------------------------------------------------------------
    def _peek(self, n: int) -> np.ndarray:  # pragma: no cover - abstract
        """At least one (and, where cheap, ``n``) upcoming units, without consuming them.

        Callers must consume at least ``n`` units afterwards whenever they ask for ``n``
        (so that no unit is generated ahead of Julia's own state changes).
        """
        raise NotImplementedError

    def _skip(self, k: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _next_unit(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _uniform(self) -> float:  # pragma: no cover - abstract
        """One ``rand(rng)`` in [0, 1)."""
        raise NotImplementedError

    def _units_to_float(self, units: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _take(self, n: int) -> np.ndarray:
        """Consume ``n`` units in order."""
        out = np.empty(n, dtype=_U64)
        i = 0
        while i < n:
            block = self._peek(n - i)
            k = min(len(block), n - i)
            out[i:i + k] = block[:k]
            self._skip(k)
            i += k
        return out

    def _float_array(self, n: int) -> np.ndarray:  # pragma: no cover - abstract
        """Julia's ``rand!(rng, Vector{Float64}(undef, n))``."""
        raise NotImplementedError

    def _randn_bulk_bits(self, n: int) -> np.ndarray:  # pragma: no cover - abstract
        """The 52-bit first draws of Julia's ``randn!(rng, Vector{Float64}(undef, n))``."""
        raise NotImplementedError

    def copy(self) -> "JuliaRNG":  # pragma: no cover - abstract
        raise NotImplementedError

    __hash__ = None  # type: ignore[assignment]  # mutable


# --------------------------------------------------------------------------------------
# MersenneTwister
# --------------------------------------------------------------------------------------

class MersenneTwister(JuliaRNG):
    """Julia's ``MersenneTwister(seed)``: dSFMT-19937 behind a cache of 1002 doubles.

    Parameters
    ----------
    seed:
        A non-negative integer.  With ``julia="1.10"`` (Julia 1.9 and 1.10) its
        little-endian 32-bit words are passed to dSFMT's ``init_by_array``; with
        ``julia="1.11"`` (Julia 1.11 to 1.13) the SHA-256 digest of those words, read
        as eight little-endian 32-bit words, is passed instead.
    julia:
        The Julia behaviour to reproduce (see :data:`ACCEPTED_VERSIONS`).

    Scalar draws come from the cache, which is refilled with the next 1002 doubles of
    the dSFMT sequence when it runs empty.  ``rand(rng, n)`` for ``n >= 384`` follows
    Julia in filling most of the array straight from the generator state, past the
    cached values (see :func:`rand`).
    """

    _shift52 = 0

    def __init__(self, seed: int, julia: str = DEFAULT_JULIA) -> None:
        self._julia = _normalize_julia(julia)
        self.seed = _check_seed(seed)
        if self._julia == "1.10":
            key = _seed_words(self.seed)
        else:
            digest = _seed_digest(self.seed)
            key = [int.from_bytes(digest[4 * i:4 * i + 4], "little") for i in range(8)]
        self._dsfmt = _DSFMT.init_by_array(key)
        self._vals = np.zeros(_CACHE, dtype=_U64)
        self._valsf = self._vals.view(np.float64)
        self._idx = _CACHE

    # --- cache ------------------------------------------------------------------------
    def _refill(self) -> None:
        self._vals = self._dsfmt.generate(_CACHE // 2)
        self._valsf = self._vals.view(np.float64)
        self._idx = 0

    def _peek(self, n: int) -> np.ndarray:
        if self._idx == _CACHE:
            self._refill()
        return self._vals[self._idx:self._idx + n]

    def _skip(self, k: int) -> None:
        self._idx += k

    def _next_unit(self) -> int:
        if self._idx == _CACHE:
            self._refill()
        self._idx += 1
        return int(self._vals[self._idx - 1])

    def _uniform(self) -> float:
        if self._idx == _CACHE:
            self._refill()
        self._idx += 1
        return float(self._valsf[self._idx - 1]) - 1.0

    def _units_to_float(self, units: np.ndarray) -> np.ndarray:
        return units.view(np.float64) - 1.0

    def _fill_close12(self, n: int) -> np.ndarray:
        """Julia's ``rand!(rng, A::Array{Float64}, CloseOpen12())`` as raw bit patterns.

        Below ``n2 = 2 * ((n - 2) / 2) < 382`` the values are copied from the cache
        (exactly like ``n`` scalar draws).  Otherwise the first ``n2`` values come from
        dSFMT's array fill, which continues the generator *after* the cached values and
        leaves the cache untouched; the last one or two values are scalar draws.
        """
        n2 = ((n - 2) // 2) * 2 if n >= 2 else -2
        if n2 < _MIN_ARRAY:
            if self._idx == _CACHE:
                self._refill()  # Julia refills here even when n == 0
            out = np.empty(n, dtype=_U64)
            m = min(n, _CACHE - self._idx)
            out[:m] = self._vals[self._idx:self._idx + m]
            if m == n:
                self._idx += m
            else:
                self._refill()
                out[m:] = self._vals[:n - m]
                self._idx = n - m
            return out
        bulk = self._dsfmt.generate(n2 // 2)
        tail = [self._next_unit() for _ in range(n - n2)]
        return np.concatenate([bulk, np.array(tail, dtype=_U64)])

    def _float_array(self, n: int) -> np.ndarray:
        return self._fill_close12(n).view(np.float64) - 1.0

    def _randn_bulk_bits(self, n: int) -> np.ndarray:
        return self._fill_close12(n) & _U64(_M52)

    # --- protocol ---------------------------------------------------------------------
    def copy(self) -> "MersenneTwister":
        """An independent copy with the same state (Julia's ``copy(rng)``)."""
        new = object.__new__(MersenneTwister)
        new._julia = self._julia
        new.seed = self.seed
        new._dsfmt = self._dsfmt.copy()
        new._vals = self._vals.copy()
        new._valsf = new._vals.view(np.float64)
        new._idx = self._idx
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MersenneTwister):
            return NotImplemented
        return (self._julia == other._julia and self._idx == other._idx
                and self._dsfmt == other._dsfmt and np.array_equal(self._vals, other._vals))

    def __repr__(self) -> str:
        return f"MersenneTwister({self.seed}, julia={self._julia!r})"


# --------------------------------------------------------------------------------------
# Xoshiro and the task-local generator
# --------------------------------------------------------------------------------------

class Xoshiro(JuliaRNG):
    """Julia's ``Xoshiro(seed)``: Xoshiro256++ seeded through SHA-256.

    Parameters
    ----------
    seed:
        A non-negative integer; the state ``(s0, s1, s2, s3)`` is the SHA-256 digest of
        the seed's little-endian 32-bit words read as four little-endian 64-bit words.
        This is the same in Julia 1.9 to 1.13.
    julia:
        The Julia behaviour to reproduce (it matters for :func:`shuffle` and for the tail
        of :func:`randn`).

    Each step outputs ``rotl(s0 + s3, 23) + s0`` and then updates the state with the
    xoshiro256 linear map.  ``rand(rng)`` is ``(u >> 11) * 2^-53`` and the 52-bit draw
    used by ``randn`` and the index samplers is ``u >> 12``.
    """

    _shift52 = 12

    def __init__(self, seed: int, julia: str = DEFAULT_JULIA) -> None:
        self._julia = _normalize_julia(julia)
        self.seed = _check_seed(seed)
        digest = _seed_digest(self.seed)
        self._s = tuple(int.from_bytes(digest[8 * i:8 * i + 8], "little") for i in range(4))
        self._buf = np.empty(0, dtype=_U64)
        self._pos = 0

    @classmethod
    def from_state(cls, state: Iterable[int], julia: str = DEFAULT_JULIA) -> "Xoshiro":
        """A generator with the given state ``(s0, s1, s2, s3)``, like Julia's
        ``Xoshiro(s0, s1, s2, s3)``."""
        words = tuple(int(s) for s in state)
        if len(words) != 4 or any(not 0 <= s <= _M64 for s in words):
            raise ValueError("state must be four integers in [0, 2**64)")
        if not any(words):
            raise ValueError("the all-zero state is not a valid Xoshiro state")
        new = object.__new__(cls)
        new._julia = _normalize_julia(julia)
        new.seed = None
        new._s = words
        new._buf = np.empty(0, dtype=_U64)
        new._pos = 0
        return new

    @property
    def state(self) -> tuple[int, int, int, int]:
        """The current state ``(s0, s1, s2, s3)``."""
        if self._pos != len(self._buf):  # pragma: no cover - internal invariant
            raise RuntimeError("Xoshiro has buffered draws outstanding")
        return self._s  # type: ignore[return-value]

    # --- unit stream ------------------------------------------------------------------
    def _peek(self, n: int) -> np.ndarray:
        have = len(self._buf) - self._pos
        if have < n:
            new, self._s = _xoshiro_block(self._s, n - have)  # type: ignore[arg-type]
            fresh = np.array(new, dtype=_U64)
            self._buf = np.concatenate([self._buf[self._pos:], fresh]) if have else fresh
            self._pos = 0
        return self._buf[self._pos:]

    def _skip(self, k: int) -> None:
        self._pos += k
        if self._pos == len(self._buf) and self._pos:
            self._buf = np.empty(0, dtype=_U64)
            self._pos = 0

    def _next_unit(self) -> int:
        if self._pos < len(self._buf):
            u = int(self._buf[self._pos])
            self._skip(1)
            return u
        s0, s1, s2, s3 = self._s
        m = _M64
        t = (s0 + s3) & m
        u = ((((t << 23) | (t >> 41)) & m) + s0) & m
        t = (s1 << 17) & m
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & m
        self._s = (s0, s1, s2, s3)
        return u

    def _uniform(self) -> float:
        return (self._next_unit() >> 11) * _TWO_M53

    def _units_to_float(self, units: np.ndarray) -> np.ndarray:
        return (units >> _U64(11)).astype(np.float64) * _TWO_M53

    def _bulk_u64(self, n: int) -> np.ndarray:
        """Julia's bulk fill of ``n`` UInt64 (``XoshiroSimd.xoshiro_bulk``).

        Requests of 64 bytes or more (``n >= 8``) take 32 draws from this stream to
        seed eight independent lanes (state word ``w`` of lane ``k`` is the draw
        ``8 w + k`` times a fixed odd constant); the lanes then write interleaved
        outputs, eight values per step, for ``n // 8`` steps, and the remaining
        ``n % 8`` values are ordinary draws from this stream.
        """
        if n < _LANES:
            return self._take(n)
        seeds = self._take(4 * _LANES).reshape(4, _LANES)
        steps = n // _LANES
        out = np.empty((steps, _LANES), dtype=_U64)
        for lane in range(_LANES):
            state = tuple((_FORK[w] * int(seeds[w, lane])) & _M64 for w in range(4))
            values, _ = _xoshiro_block(state, steps)  # type: ignore[arg-type]
            out[:, lane] = values
        rest = self._take(n - steps * _LANES)
        return np.concatenate([out.reshape(-1), rest])

    def _float_array(self, n: int) -> np.ndarray:
        return self._units_to_float(self._bulk_u64(n))

    def _randn_bulk_bits(self, n: int) -> np.ndarray:
        return self._bulk_u64(n) >> _U64(12)

    # --- protocol ---------------------------------------------------------------------
    def copy(self) -> "Xoshiro":
        """An independent copy with the same state (Julia's ``copy(rng)``, which is a
        ``Xoshiro`` also for the task-local generator)."""
        new = object.__new__(Xoshiro)
        new._julia = self._julia
        new.seed = self.seed
        new._s = self._s
        new._buf = self._buf[self._pos:].copy()
        new._pos = 0
        return new

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Xoshiro):
            return NotImplemented
        return (self._julia == other._julia and self._s == other._s
                and np.array_equal(self._buf[self._pos:], other._buf[other._pos:]))

    def __repr__(self) -> str:
        if self.seed is None:
            words = ", ".join(f"0x{s:016x}" for s in self._s)
            return f"{type(self).__name__}.from_state(({words}), julia={self._julia!r})"
        return f"{type(self).__name__}({self.seed}, julia={self._julia!r})"


class TaskLocalRNG(Xoshiro):
    """The stream of Julia's global generator after ``Random.seed!(seed)``.

    In Julia 1.7 and later the default generator is the task-local Xoshiro256++ and
    ``Random.seed!(seed)`` seeds it exactly as ``Xoshiro(seed)`` (SHA-256 of the seed's
    32-bit words), so this is a :class:`Xoshiro` with a different name.  It reproduces
    what Julia draws from ``rand()``, ``randn(Float32, L, B)`` and friends *without* an
    explicit generator, provided nothing else draws from the global generator in
    between.
    """


def seed_(seed: int, julia: str = DEFAULT_JULIA) -> TaskLocalRNG:
    """The stream that Julia's ``Random.seed!(seed)`` puts into the global generator.

    Equivalent to ``Random.seed!(seed)`` followed by calls without an explicit RNG
    (``rand()``, ``randn(Float32, L, B)``, ...), in Julia 1.9 to 1.13; ``julia`` selects
    the version-dependent sampling algorithms.
    """
    rng = object.__new__(TaskLocalRNG)
    Xoshiro.__init__(rng, seed, julia)
    return rng


# --------------------------------------------------------------------------------------
# helpers shared by the sampling functions
# --------------------------------------------------------------------------------------

def _check_rng(rng: Any) -> JuliaRNG:
    if not isinstance(rng, JuliaRNG):
        raise TypeError(
            "rng must be a juliarng stream (MersenneTwister, Xoshiro or seed_(...)), "
            f"got {type(rng).__name__}"
        )
    return rng


_KI_ARR = np.array(KI, dtype=np.int64)
_WI_ARR = np.array(WI, dtype=np.float64)
_KI_LIST = list(KI)
_WI_LIST = list(WI)
_FI_LIST = list(FI)
_NOR_R = ZIGGURAT_NOR_R
_NOR_INV_R = 1.0 / ZIGGURAT_NOR_R
_CHUNK = 1024


def _log_or_minus_inf(u: float) -> float:
    return math.log(u) if u > 0.0 else -math.inf


def _randn_rare(rng: JuliaRNG, idx: int, rabs: int, x: float) -> float:
    """The branches of the ziggurat taken when the first draw is not accepted."""
    if idx == 0:  # the tail beyond r, by Marsaglia's exponential rejection
        if rng._julia == "1.10":
            while True:
                xx = -_NOR_INV_R * _log_or_minus_inf(rng._uniform())
                yy = -_log_or_minus_inf(rng._uniform())
                if yy + yy > xx * xx:
                    return -_NOR_R - xx if (rabs >> 8) & 1 else _NOR_R + xx
        while True:
            xx = -_NOR_INV_R * math.log1p(-rng._uniform())
            yy = -math.log1p(-rng._uniform())
            if yy + yy > xx * xx:
                return -_NOR_R - xx if (rabs >> 8) & 1 else _NOR_R + xx
    if (_FI_LIST[idx - 1] - _FI_LIST[idx]) * rng._uniform() + _FI_LIST[idx] < math.exp(-0.5 * x * x):
        return x
    return _randn_scalar(rng)


def _randn_from52(rng: JuliaRNG, r: int) -> float:
    rabs = r >> 1
    idx = rabs & 0xFF
    x = float(-rabs if r & 1 else rabs) * _WI_LIST[idx]
    if rabs < _KI_LIST[idx]:
        return x
    return _randn_rare(rng, idx, rabs, x)


def _randn_scalar(rng: JuliaRNG) -> float:
    """Julia's ``randn(rng)``."""
    return _randn_from52(rng, (rng._next_unit() >> rng._shift52) & _M52)


def _ziggurat_first_pass(r52: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rabs = (r52 >> _U64(1)).astype(np.int64)
    idx = rabs & 0xFF
    signed = np.where((r52 & _U64(1)).astype(bool), -rabs, rabs)
    x = signed * _WI_ARR[idx]
    return x, rabs < _KI_ARR[idx], rabs, idx


def _randn_sequential(rng: JuliaRNG, n: int) -> np.ndarray:
    """``n`` consecutive scalar ``randn(rng)`` draws, with a vectorised fast path."""
    out = np.empty(n, dtype=np.float64)
    shift = _U64(rng._shift52)
    mask = _U64(_M52)
    i = 0
    while i < n:
        units = rng._peek(n - i)
        m = min(len(units), n - i, _CHUNK)
        r52 = (units[:m] >> shift) & mask
        x, ok, rabs, idx = _ziggurat_first_pass(r52)
        bad = np.flatnonzero(~ok)
        f = int(bad[0]) if bad.size else m
        out[i:i + f] = x[:f]
        rng._skip(f)
        i += f
        if f < m:
            rng._skip(1)
            out[i] = _randn_rare(rng, int(idx[f]), int(rabs[f]), float(x[f]))
            i += 1
    return out


def _randn_bulk(rng: JuliaRNG, n: int) -> np.ndarray:
    """Julia's ``randn!(rng, A::Array{Float64})`` for the sizes that take the bulk path:
    all first draws are made at once, then the rejected entries are redrawn in order."""
    x, ok, rabs, idx = _ziggurat_first_pass(rng._randn_bulk_bits(n))
    for k in np.flatnonzero(~ok).tolist():
        x[k] = _randn_rare(rng, int(idx[k]), int(rabs[k]), float(x[k]))
    return x


def _masks_forward(n: int) -> list[int]:
    """Masks for steps ``i = 2..n`` of the forward passes (start at 3, grow at ``mask+1``)."""
    masks = []
    mask = 3
    for i in range(2, n + 1):
        masks.append(mask)
        if i == mask + 1:
            mask = 2 * mask + 1
    return masks


def _masks_backward(n: int) -> list[int]:
    """Masks for steps ``i = n..2`` of Julia 1.10's ``shuffle!`` (shrinking mask)."""
    masks = []
    if n < 2:
        return masks
    mask = (1 << (n - 1).bit_length()) - 1
    for i in range(n, 1, -1):
        if (mask >> 1) == i:
            mask >>= 1
        masks.append(mask)
    return masks


def _bounded_draws(rng: JuliaRNG, sups: list[int], masks: list[int]) -> list[int]:
    """For each step ``k``, redraw ``(draw52 & masks[k])`` until it is ``<= sups[k]``.

    This is Julia's ``rand(rng, ltm52(n, mask))`` (``LessThan(n-1, Masked(mask,
    UInt52Raw()))``) used by ``shuffle!``, ``randperm!`` and ``randcycle!``.
    """
    n = len(sups)
    out = [0] * n
    shift = rng._shift52
    k = 0
    while k < n:
        block = rng._peek(n - k).tolist()
        p = 0
        size = len(block)
        while k < n and p < size:
            v = (block[p] >> shift) & masks[k]
            p += 1
            if v <= sups[k]:
                out[k] = v
                k += 1
        rng._skip(p)
    return out


def _shuffle_order(rng: JuliaRNG, n: int) -> list[int]:
    """The permutation applied by Julia's ``shuffle!`` to a vector of length ``n``,
    as 0-based source positions: ``result[q] = original[order[q]]``."""
    order = list(range(n))
    if n < 2:
        return order
    if rng._julia == "1.10":
        steps = list(range(n, 1, -1))
        masks = _masks_backward(n)
    else:
        steps = list(range(2, n + 1))
        masks = _masks_forward(n)
    draws = _bounded_draws(rng, [i - 1 for i in steps], masks)
    for i, j in zip(steps, draws):
        order[i - 1], order[j] = order[j], order[i - 1]
    return order


# --------------------------------------------------------------------------------------
# public sampling functions
# --------------------------------------------------------------------------------------

def rand(rng: JuliaRNG, *dims: int) -> Union[float, np.ndarray]:
    """Uniform ``Float64`` draws in [0, 1), as Julia's ``rand(rng)`` / ``rand(rng, dims...)``.

    With no ``dims`` this is one scalar draw, returned as a Python float.  With ``dims``
    it is ``rand(rng, Float64, reverse(dims)...)`` in Julia, returned as a C-order
    ``float64`` array of shape ``dims`` (a single tuple is accepted too).

    Julia's array fill is reproduced exactly, including its bulk paths:

    * ``MersenneTwister``: up to 383 values are taken from the cache (the same as
      scalar draws); from 384 values on, all but the last one or two come from dSFMT's
      array fill, which continues the generator past the 1002 cached doubles without
      consuming them, and the last values are scalar draws from the cache.
    * ``Xoshiro`` / task-local: up to 7 values are scalar draws; from 8 values on Julia
      seeds eight independent Xoshiro256++ lanes from 32 draws of the stream (state word
      ``w`` of lane ``k`` is draw ``8w + k`` times a fixed odd constant), writes their
      outputs interleaved, eight values per step, and takes the last ``n % 8`` values
      as scalar draws from the stream.
    """
    rng = _check_rng(rng)
    if not dims:
        return rng._uniform()
    shape = _check_dims(dims)
    n = math.prod(shape)
    return rng._float_array(n).reshape(shape)


def randn(rng: JuliaRNG, *dims: int, dtype: Any = np.float64) -> Union[float, np.floating, np.ndarray]:
    """Standard normal draws, as Julia's ``randn(rng, T, dims...)`` / ``randn!``.

    The sampler is Julia's 256-strip ziggurat (Marsaglia and Tsang) on a 52-bit draw:
    bit 0 is the sign, bits 1 to 8 the strip and bits 1 to 51 the magnitude; the rare
    rejections fall back to the exact wedge test or to the tail sampler.

    * no ``dims``: one draw, a Python float (``numpy.float32`` for ``dtype=float32``);
    * ``dtype=numpy.float32``: Julia's ``randn(rng, Float32, reverse(dims)...)``, i.e.
      one scalar ``Float64`` draw per element, rounded to nearest ``Float32``, filled in
      order.  Julia's ``randn(Float32, L, B)`` is ``randn(rng, B, L,
      dtype=numpy.float32)`` here: same values in the same memory order;
    * ``dtype=numpy.float64``: Julia's ``randn(rng, reverse(dims)...)``, which for
      ``MersenneTwister`` with 13 or more values, and ``Xoshiro`` with 7 or more, first
      fills the array in bulk (as :func:`rand` does, 52-bit patterns instead of
      floats) and then redraws the rejected entries in order; smaller arrays are scalar
      draws.

    ``dtype`` may be ``float32`` or ``float64`` (anything NumPy maps to them); any
    other type raises ``TypeError``.
    """
    rng = _check_rng(rng)
    try:
        kind = np.dtype(dtype)
    except TypeError:
        kind = None
    if kind not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"randn: dtype must be float32 or float64, got {dtype!r}")
    if not dims:
        value = _randn_scalar(rng)
        return np.float32(value) if kind == np.float32 else value
    shape = _check_dims(dims)
    n = math.prod(shape)
    if kind == np.float32:
        return _randn_sequential(rng, n).astype(np.float32).reshape(shape)
    bulk_from = 13 if isinstance(rng, MersenneTwister) else 7
    values = _randn_bulk(rng, n) if n >= bulk_from else _randn_sequential(rng, n)
    return values.reshape(shape)


def randperm(rng: JuliaRNG, n: int) -> np.ndarray:
    """A random permutation of ``0..n-1``: Julia's ``randperm(rng, n) .- 1``.

    The algorithm is Julia's ``randperm!`` (identical from 1.0 to 1.12): an
    inside-out Fisher-Yates pass for ``i = 2..n`` drawing ``j`` uniformly in ``1..i``
    from ``(draw52 & mask)`` with rejection, the mask starting at 3 and doubling (plus
    one) after ``i == mask + 1``.  Returns a ``numpy.int64`` array.
    """
    rng = _check_rng(rng)
    n = _check_count(n)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    draws = _bounded_draws(rng, list(range(1, n)), _masks_forward(n))
    a = [0] * n
    a[0] = 1
    for i, j0 in zip(range(2, n + 1), draws):
        if j0 != i - 1:
            a[i - 1] = a[j0]
        a[j0] = i
    return np.array(a, dtype=np.int64) - 1


def randcycle(rng: JuliaRNG, n: int) -> np.ndarray:
    """A random cyclic permutation of ``0..n-1``: Julia's ``randcycle(rng, n) .- 1``.

    Sattolo's variant of :func:`randperm` (``j`` drawn in ``1..i-1``), with the same
    masked rejection sampler; identical in Julia 1.9 to 1.12.
    """
    rng = _check_rng(rng)
    n = _check_count(n)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    draws = _bounded_draws(rng, list(range(0, n - 1)), _masks_forward(n))
    a = [0] * n
    a[0] = 1
    for i, j0 in zip(range(2, n + 1), draws):
        a[i - 1] = a[j0]
        a[j0] = i
    return np.array(a, dtype=np.int64) - 1


SequenceLike = Union[range, np.ndarray, list, tuple]


def shuffle(rng: JuliaRNG, seq: SequenceLike) -> Union[np.ndarray, list, tuple]:
    """A shuffled copy of ``seq``: Julia's ``shuffle(rng, v)`` (``shuffle!`` on a copy).

    * ``range`` -> ``numpy.int64`` array; ``shuffle(rng, range(B))`` is Julia's
      ``shuffle(rng, 1:B) .- 1`` (a ``UnitRange``, which Julia copies to a vector);
    * ``numpy.ndarray`` -> array of the same shape; all elements are permuted in C
      order, which is Julia's linear (column-major) order for the reversed shape;
    * ``list`` -> list, ``tuple`` -> tuple.

    The permutation follows the version: with ``julia="1.10"`` a backward Fisher-Yates
    pass (``i = n..2``, ``j`` in ``1..i``, mask shrinking from ``nextpow(2, n) - 1``);
    with ``julia="1.11"`` a forward pass (``i = 2..n``, mask growing from 3), whose
    result on ``range(n)`` equals :func:`randperm`.
    """
    rng = _check_rng(rng)
    if isinstance(seq, range):
        values = np.arange(seq.start, seq.stop, seq.step, dtype=np.int64)
        return values[_shuffle_order(rng, len(values))]
    if isinstance(seq, np.ndarray):
        flat = seq.reshape(-1)
        return flat[_shuffle_order(rng, flat.size)].reshape(seq.shape)
    if isinstance(seq, (list, tuple)):
        order = _shuffle_order(rng, len(seq))
        items = [seq[q] for q in order]
        return items if isinstance(seq, list) else tuple(items)
    raise TypeError(f"shuffle: expected a range, list, tuple or numpy array, got {type(seq).__name__}")


def shuffle_(rng: JuliaRNG, a: Union[np.ndarray, list]) -> Union[np.ndarray, list]:
    """Shuffle ``a`` in place and return it: Julia's ``shuffle!(rng, a)``.

    Accepts a ``list`` or a writeable ``numpy.ndarray`` (all elements permuted in C
    order); the permutation is the one :func:`shuffle` would apply.
    """
    rng = _check_rng(rng)
    if isinstance(a, list):
        a[:] = [a[q] for q in _shuffle_order(rng, len(a))]
        return a
    if isinstance(a, np.ndarray):
        if not a.flags.writeable:
            raise ValueError("shuffle_: the array is read-only")
        order = _shuffle_order(rng, a.size)
        a[...] = a.reshape(-1)[order].reshape(a.shape)
        return a
    raise TypeError(f"shuffle_: expected a list or a numpy array, got {type(a).__name__}")

