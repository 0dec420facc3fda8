"""A model agrees with its float64 reference, with its NumPy export and with its saved copy.

* :func:`check_losses_match_reference`: the encoder, decoder, critic, log-likelihood,
  KL term and losses of a model built from the standard layer types, against the
  independent float64 reference of :mod:`autoencoder_toolkit.testing.reference`, at the
  same noise and permutations.
* :func:`check_export_agreement`: the frozen copy that ``model.to_backend("numpy")``
  (or your own exporter) serves holds the model's tensors and computes what the torch
  model computes.
* :func:`check_checkpoint_round_trip`: ``save_model`` then ``load_model`` gives back the
  same class, architecture, tensors and outputs (and the NumPy loader reads the file).

Shapes: ``x`` is a batch ``(B, *sample_shape)``; ``B >= 2`` for an InfoMax-VAE.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import inference
from ..backends import as_numpy
from ..models.architecture import load_model, module_config, save_model
from ..models.decoders import decoder_loglikelihood
from ..models.encoders import encoder_kl
from ..models.infomaxvaes import InfoMaxVAE, infomaxloss, miloss, variational_mutual_info
from ..models.mmdvaes import MMDVAE
from ..models.vaes import VAE
from ..models.vaes import loss as vae_loss
from ..random.draws import PresetDraws
from .reference import Reference
from .state import assert_close, assert_same_tensors, max_abs_error, name_list
from .steps import model_parts, quiet_small_batches

__all__ = ["check_losses_match_reference", "check_export_agreement", "check_checkpoint_round_trip", "model_input"]


def model_input(model: nn.Module, x: Any) -> torch.Tensor:
    """``x`` as a tensor on the model's device, in its floating dtype."""
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(as_numpy(x), dtype=dtype, device=device)


# ----------------------------------------------------------------------------------
# The float64 reference
# ----------------------------------------------------------------------------------

def _piece(actual: Any, expected: np.ndarray, rtol: float, what: str, atol: float = 0.0) -> None:
    got = as_numpy(actual.detach().cpu() if isinstance(actual, torch.Tensor) else actual).reshape(expected.shape)
    try:
        assert_close(got, expected, rtol, f"{what} differs from the float64 reference of the same weights and draws",
                     atol)
    except AssertionError as err:
        raise AssertionError(str(err)) from None


def _loss(actual: float, expected: float, scale: float, rtol: float, what: str, terms: str) -> None:
    err = abs(actual - expected)
    if not err <= rtol * max(scale, 1.0):
        raise AssertionError(
            f"{what} gave {actual:.9g}, the float64 reference {expected:.9g} ({terms}): a difference of {err:.3g} "
            f"above {rtol:g} x {max(scale, 1.0):.3g}; the encoder, decoder, critic, log-likelihood and KL term agree "
            f"with the reference, so the difference is in how {what} combines them")


def check_losses_match_reference(model: nn.Module, x: Any, *, β: float = 1.0, α: float = 1.0,
                                 infomaxloss: Callable = infomaxloss, miloss: Callable = miloss,
                                 loss: Callable = vae_loss, seed: int = 0, rtol: float = 1e-4) -> None:
    """The model's outputs and losses equal the independent float64 reference's at the same draws.

    ``model`` is a VAE or an InfoMax-VAE of the standard layer types (see
    :mod:`autoencoder_toolkit.testing.reference`; others raise ``NotCovered``, a
    ``TypeError``). With noise and a permutation drawn from ``numpy.random.default_rng(seed)``
    and handed to the model through ``PresetDraws``, in order:

    1. the encoder's two outputs, the decoder's outputs at the reference's codes, the
       critic's values, the per-sample log-likelihood (``decoder_loglikelihood``) and
       KL term (``encoder_kl``), each within ``rtol`` of its largest magnitude;
    2. ``infomaxloss(model.vae, model.mi, x, β=β, α=α, rng=...)`` and ``miloss(...)``
       (a VAE: ``loss(model, x, β=β, rng=...)``), each within ``rtol`` times the sum of
       the magnitudes of its terms.

    The loss functions are the ones under test (the package's by default); they must
    draw from ``rng`` in the package's order (noise, then permutation).

    Raises ``AssertionError`` naming the first piece that disagrees.
    """
    vae, critic = model_parts(model, "check_losses_match_reference")
    ref = Reference(model)
    xt = model_input(model, x)
    draws = np.random.default_rng(seed)
    encoded = ref.encode(xt)
    noise = draws.standard_normal(encoded[0].shape, dtype=np.float32)
    z = ref.codes(encoded, noise)
    zt = torch.as_tensor(z, dtype=xt.dtype, device=xt.device)
    with torch.no_grad(), quiet_small_batches():
        enc_out = vae.encoder(xt)
        names = getattr(enc_out, "_fields", ("μ", "scale"))
        _piece(enc_out[0], encoded[0], rtol, f"the encoder's {names[0]}")
        _piece(enc_out[1], encoded[1], rtol, f"the encoder's {names[1]}")
        dec_out = vae.decoder(zt)
        dec_ref = ref.decode(z)
        for i, (field, expected) in enumerate(zip(getattr(dec_out, "_fields", range(len(dec_ref))), dec_ref)):
            _piece(dec_out[i], expected, rtol, f"the decoder's {field}")
        _piece(decoder_loglikelihood(xt, zt, vae.decoder, dec_out), ref.loglikelihood(xt, dec_ref), rtol,
               "the log-likelihood (decoder_loglikelihood)")
        # the KL term sums L terms of magnitude 1 or more, and nears 0 as q(z|x) nears the prior
        _piece(encoder_kl(vae.encoder, enc_out), ref.kl(encoded), rtol, "the KL term (encoder_kl)",
               rtol * encoded[0].shape[-1])
        if critic is None:
            got = float(loss(model, x, β=β, rng=PresetDraws([noise])))
            terms = ref.vae_loss(xt, noise, β=β)
            _loss(got, terms.value, abs(terms.loglikelihood) + β * abs(terms.kl), rtol, "the VAE loss",
                  f"−LL + β KL with LL = {terms.loglikelihood:.6g}, KL = {terms.kl:.6g}")
            return
        perm = draws.permutation(xt.shape[0])
        _piece(critic(xt, zt), ref.critic(xt, z), rtol, "the critic's values g(x, z)")
        got = float(infomaxloss(vae, critic, x, β=β, α=α, rng=PresetDraws([noise, perm])))
        terms = ref.infomaxloss(xt, noise, perm, β=β, α=α)
        g, g_shuffled = ref.critic(xt, z), ref.critic(xt, z[perm])
        mi_scale = float(np.mean(np.abs(g)) + np.mean(np.exp(g_shuffled - 1.0)))
        _loss(got, terms.value, abs(terms.loglikelihood) + β * abs(terms.kl) + α * mi_scale, rtol, "infomaxloss",
              f"−LL + β KL − α Î with LL = {terms.loglikelihood:.6g}, KL = {terms.kl:.6g}, "
              f"Î = {terms.mutual_info:.6g}")
        noise2 = draws.standard_normal(encoded[0].shape, dtype=np.float32)
        perm2 = draws.permutation(xt.shape[0])
        got = float(miloss(vae, critic, x, rng=PresetDraws([noise2, perm2])))
        expected = ref.miloss(xt, noise2, perm2)
        z2 = ref.codes(encoded, noise2)
        scale2 = float(np.mean(np.abs(ref.critic(xt, z2))) + np.mean(np.exp(ref.critic(xt, z2[perm2]) - 1.0)))
        _loss(got, expected, scale2, rtol, "miloss", f"−Î = {expected:.6g}")


# ----------------------------------------------------------------------------------
# The NumPy export
# ----------------------------------------------------------------------------------

def _same_arrays(frozen: Any, exported: nn.Module) -> None:
    """The frozen model holds every tensor of the torch model, unchanged, and nothing else."""
    if not hasattr(frozen, "named_arrays"):
        return
    held = dict(frozen.named_arrays())
    expected = exported.state_dict()
    missing = [n for n in expected if n not in held]
    if missing:
        which = f"tensor {missing[0]} (the torch model has it)" if len(missing) == 1 else \
            f"tensors {name_list(missing)} (the torch model has them)"
        raise AssertionError(f"the export has no {which}: it serves a different model")
    extra = [n for n in held if n not in expected]
    if extra:
        raise AssertionError(f"the export holds tensors the torch model does not have: {name_list(extra)}")
    for name, t in expected.items():
        a, e = as_numpy(held[name]), t.detach().cpu().numpy()
        if a.shape != e.shape or not np.array_equal(a.astype(np.float64), e.astype(np.float64)):
            raise AssertionError(f"the export's tensor {name} differs from the torch model's (max abs difference "
                                 f"{max_abs_error(a, e) if a.shape == e.shape else float('nan'):.3g}, shapes "
                                 f"{a.shape} and {e.shape})")


def _agrees(actual: Any, expected: Any, rtol: float, what: str, frozen: Any, atol: float = 0.0) -> None:
    backend = getattr(frozen, "backend", None)
    if backend is not None and not backend.is_array(actual):
        raise AssertionError(f"the export's {what} is a {type(actual).__name__}, not an array of its backend "
                             f"{backend.name}")
    try:
        assert_close(actual, expected.detach().cpu() if isinstance(expected, torch.Tensor) else expected, rtol,
                     f"the export disagrees with the torch model on {what}", atol)
    except AssertionError as err:
        raise AssertionError(str(err)) from None


def check_export_agreement(model: nn.Module, x: Any, *, backend: str = "numpy",
                           export: Callable[[nn.Module], Any] | None = None, rtol: float = 1e-5,
                           atol: float | None = None, seed: int = 0) -> None:
    """The exported (frozen) model holds the torch model's tensors and computes what it computes.

    ``export(model)`` is the exporter under test (default ``model.to_backend(backend)``).
    Checked, for a VAE or an InfoMax-VAE:

    1. the frozen model's tensors (``named_arrays``) are the model's ``state_dict``:
       none missing, none extra, all equal;
    2. on a copy of the model in evaluation mode (as the frozen models compute),
       with one noise draw and one permutation given to both: ``encode(x)`` (``μ``,
       ``σ``), the forward pass with ``latent=True`` (codes, decoder outputs, MI
       estimate), ``decode(z)``, the per-sample log-likelihood, the KL term and, for an
       InfoMax-VAE, ``mutual_info`` and the critic ``mi(x, z)``: each is an array of the
       export's backend and equals the torch model's within ``rtol`` of its largest
       magnitude (float32 rounding), plus ``atol`` for the two results that cancel: the
       KL term and the MI estimate, which near 0 while their terms do not. By default
       ``atol`` is ``rtol`` times the magnitude of those terms (the latent size for the KL
       term, ``mean|g(x, z)| + mean exp(g(x, z̃) − 1)`` for the MI estimate); ``0``
       compares them relative to their own magnitude only.

    Raises ``AssertionError`` naming the tensor or the output that differs.
    """
    model_parts(model, "check_export_agreement")
    frozen = model.to_backend(backend) if export is None else export(model)
    _same_arrays(frozen, model)
    model = copy.deepcopy(model).eval()  # a frozen model computes as torch's eval() mode does
    vae, critic = model_parts(model, "check_export_agreement")
    xt = model_input(model, x)
    xn = xt.detach().cpu().numpy()
    draws = np.random.default_rng(seed)
    with torch.no_grad(), quiet_small_batches():
        enc = vae.encoder(xt)
        noise = torch.as_tensor(draws.standard_normal(tuple(enc[0].shape), dtype=np.float32), device=xt.device,
                                dtype=xt.dtype)
        z = vae.encoder.reparameterize(enc, noise=noise)
        dec = vae.decoder(z)
        ll = decoder_loglikelihood(xt, z, vae.decoder, dec)
        kl = encoder_kl(vae.encoder, enc)
        sigma = vae.encoder.distribution(enc).σ
        noise_n, z_n = noise.cpu().numpy(), z.cpu().numpy()
        fe = frozen.posterior(xn)
        _agrees(frozen.encode(xn), enc[0], rtol, "encode(x)", frozen)
        _agrees(fe.μ, enc[0], rtol, "posterior(x).μ", frozen)
        _agrees(fe.σ, sigma, rtol, "posterior(x).σ", frozen)
        fields = getattr(dec, "_fields", tuple(str(i) for i in range(len(dec))))
        for i, out in enumerate(frozen.decode(z_n)):
            _agrees(out, dec[i], rtol, f"decode(z).{fields[i]}", frozen)
        _agrees(frozen.loglikelihood(xn, noise=noise_n), ll, rtol, "loglikelihood(x)", frozen)
        kl_atol = rtol * enc[0].shape[-1] if atol is None else atol
        _agrees(frozen.kl(xn), kl, rtol, "kl(x)", frozen, kl_atol)
        if critic is None:
            vo = frozen(xn, latent=True, noise=noise_n)
            _agrees(vo.z, z, rtol, "the forward pass's z", frozen)
            for i, out in enumerate(vo.decoder):
                _agrees(out, dec[i], rtol, f"the forward pass's decoder output {fields[i]}", frozen)
            return
        perm = torch.as_tensor(draws.permutation(xt.shape[0]), device=xt.device)
        mi = variational_mutual_info(critic, xt, z, z[perm])
        mi_terms = float(critic(xt, z).abs().mean() + torch.exp(critic(xt, z[perm]) - 1).mean())
        mi_atol = rtol * mi_terms if atol is None else atol
        vo = frozen(xn, latent=True, noise=noise_n, permutation=perm.cpu().numpy())
        _agrees(vo.vae.z, z, rtol, "the forward pass's z", frozen)
        for i, out in enumerate(vo.vae.decoder):
            _agrees(out, dec[i], rtol, f"the forward pass's decoder output {fields[i]}", frozen)
        _agrees(vo.mi, mi, rtol, "the forward pass's mutual information", frozen, mi_atol)
        _agrees(frozen.mutual_info(xn, noise=noise_n, permutation=perm.cpu().numpy()), mi, rtol, "mutual_info(x)",
                frozen, mi_atol)
        _agrees(frozen.mi(xn, z_n), critic(xt, z), rtol, "the critic mi(x, z)", frozen)


# ----------------------------------------------------------------------------------
# Saving and loading
# ----------------------------------------------------------------------------------

def _named_outputs(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """The tensors of a (nested) named tuple of outputs, by their dotted field names."""
    if isinstance(value, torch.Tensor):
        return [(prefix or "output", value)]
    if isinstance(value, tuple):
        names = getattr(value, "_fields", tuple(str(i) for i in range(len(value))))
        return [item for name, v in zip(names, value)
                for item in _named_outputs(v, f"{prefix}.{name}" if prefix else name)]
    return []


def check_checkpoint_round_trip(model: nn.Module, x: Any = None, *, directory: str | Path | None = None,
                                save: Callable[..., Any] = save_model, load: Callable[..., nn.Module] = load_model,
                                numpy: bool = True, seed: int = 0) -> None:
    """``load(save(model, path))`` gives back the model: class, architecture, tensors and outputs.

    ``save(model, path) -> path`` and ``load(path) -> model`` are the functions under
    test (default :func:`autoencoder_toolkit.checkpoints.save_model` and ``load_model``);
    the file goes to ``directory`` (a temporary folder by default). Checked:

    1. the loaded model has the same class and architecture (``module_config``);
    2. its ``state_dict`` has the same names, in the same order, and the same dtypes,
       shapes and values, bit for bit;
    3. with ``x``: the same outputs in evaluation mode, bit for bit (for a VAE or an
       InfoMax-VAE, the forward pass with ``latent=True`` and a generator seeded ``seed``;
       else ``model(x)``);
    4. with ``numpy``: the NumPy loader (``inference.load``) reads the same architecture
       and tensors from the file (pass ``numpy=False`` for a model with layers the frozen
       models do not run).
    """
    if directory is None:
        with tempfile.TemporaryDirectory() as tmp:
            return check_checkpoint_round_trip(model, x, directory=tmp, save=save, load=load, numpy=numpy, seed=seed)
    path = save(model, Path(directory) / "model.safetensors")
    loaded = load(path)
    if type(loaded) is not type(model):
        raise AssertionError(f"the model read back is a {type(loaded).__name__}, the model saved a "
                             f"{type(model).__name__}")
    if module_config(loaded) != module_config(model):
        raise AssertionError("the architecture read back (module_config) differs from the model's")
    try:
        assert_same_tensors(loaded.state_dict(), model.state_dict(), "the tensors read back")
    except AssertionError as err:
        raise AssertionError(str(err)) from None
    if list(loaded.state_dict()) != list(model.state_dict()):
        raise AssertionError("the tensors read back come in another order than the model's state_dict")
    if x is not None:
        xt = model_input(model, x)
        # in evaluation mode (dropout off), on a copy (a forward pass may update batch norm statistics)
        twin = copy.deepcopy(model).eval()
        loaded = loaded.to(xt.device).eval()
        with torch.no_grad(), quiet_small_batches():
            if isinstance(model, (VAE, InfoMaxVAE)):
                a = twin(xt, latent=True, rng=torch.Generator(device=xt.device).manual_seed(seed))
                b = loaded(xt, latent=True, rng=torch.Generator(device=xt.device).manual_seed(seed))
            else:
                a, b = twin(xt), loaded(xt)
        for (name, u), (_, v) in zip(_named_outputs(a), _named_outputs(b)):
            if not torch.equal(u, v):
                raise AssertionError(f"the model read back computes a different {name!r} in its forward pass (max abs "
                                     f"difference {max_abs_error(v.cpu(), u.cpu()):.3g}): something that shapes its "
                                     "outputs is not saved")
    if numpy:
        try:
            frozen = inference.load(path)
        except inference.NotExportable as err:
            raise AssertionError(f"the NumPy loader cannot run the model saved ({err}); pass numpy=False for a "
                                 "model the frozen models do not cover") from None
        exported = model.vae if isinstance(model, MMDVAE) else model  # at inference an MMD-VAE is its VAE
        if frozen.config() != module_config(exported):
            raise AssertionError("the NumPy loader reads a different architecture from the file")
        if sorted(dict(frozen.named_arrays())) != sorted(exported.state_dict()):
            raise AssertionError("the NumPy loader reads different tensors from the file")
    return None
