r"""Gradient routing of an InfoMax-VAE: each loss reaches only its own network, each optimizer moves only its own.

The InfoMax-VAE trains two networks on two losses. With
:math:`\hat I = \overline{g(x, z)} - \overline{\exp(g(x, \tilde z) - 1)}` and
:math:`\tilde z` the codes ``z`` permuted across the batch:

* the VAE (encoder and decoder) follows :math:`\nabla_{vae}` of
  ``infomaxloss`` :math:`= -\overline{\log p(x|z)} + β\,\overline{KL} - α\hat I`, in which
  the shuffled codes :math:`\tilde z` are a **constant**: their term changes the value
  but gives the VAE no gradient;
* the critic follows :math:`\nabla_{mi}` of ``miloss`` :math:`= -\hat I`, in which the
  VAE is a constant: the critic's loss gives the VAE no gradient;
* ``opt.vae`` holds and moves the VAE's parameters only, ``opt.mi`` the critic's only.

Bugs that break this train without an error and give a model that looks fine: a
missing ``detach`` on the codes before shuffling them, a critic loss evaluated with the
VAE's graph attached, gradients of one loss left on the other network when its
optimizer steps, an optimizer built over ``model.parameters()``. The checks here catch
each and say which:

* :func:`check_shuffled_codes_detached` (a loss function);
* :func:`check_critic_loss_routing` (a loss function);
* :func:`check_optimizer_routing` (a training step and its optimizers);
* :func:`check_gradient_routing`: the three.

Shapes: ``x`` is a batch ``(B, *sample_shape)`` with ``B >= 2``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..models.infomaxvaes import InfoMaxVAE, infomaxloss, miloss
from ..random.draws import PresetDraws
from .state import differences, name_list, optimizers_of, snapshot
from .steps import ScriptedDraws, Step, default_optimizers, fresh_copy, library_step, quiet_small_batches

__all__ = ["check_shuffled_codes_detached", "check_critic_loss_routing", "check_optimizer_routing",
           "check_gradient_routing"]

_DETACH_ADVICE = ("detach the codes before shuffling them (z.detach()[perm]): the critic's term "
                  "exp(g(x, z̃) − 1) must be a constant for the VAE")


def _infomax(model: Any, check: str) -> InfoMaxVAE:
    if not isinstance(model, InfoMaxVAE):
        raise TypeError(f"model: {check} expected an InfoMaxVAE, got {type(model).__name__}")
    return model


def _trainable(module: nn.Module, prefix: str) -> list[tuple[str, nn.Parameter]]:
    return [(f"{prefix}.{n}", p) for n, p in module.named_parameters() if p.requires_grad]


def _grads(value: torch.Tensor, params: Sequence[tuple[str, nn.Parameter]]) -> dict[str, torch.Tensor | None]:
    if not value.requires_grad:
        return {name: None for name, _ in params}
    grads = torch.autograd.grad(value, [p for _, p in params], allow_unused=True)
    return {name: (None if g is None else g.detach().clone()) for (name, _), g in zip(params, grads)}


def _largest_difference(a: dict[str, torch.Tensor | None], b: dict[str, torch.Tensor | None],
                        rtol: float, atol: float) -> tuple[str, float, float] | None:
    """The first parameter whose gradients differ beyond tolerance: ``(name, max difference, scale)``."""
    for name in a:
        ga, gb = a[name], b.get(name)
        if ga is None and gb is None:
            continue
        ref = gb if gb is not None else torch.zeros_like(ga)
        got = ga if ga is not None else torch.zeros_like(gb)
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        diff = float((got.double() - ref.double()).abs().max()) if ref.numel() else 0.0
        if not diff <= rtol * scale + atol:
            return name, diff, scale
    return None


def _require_draws(draws: ScriptedDraws, what: str) -> None:
    if draws.n_noise == 0 or draws.n_permutations == 0:
        raise AssertionError(
            f"{what} drew {draws.n_noise} noise array(s) and {draws.n_permutations} permutation(s) from rng: its "
            "noise and the permutation of its shuffled codes must come from rng= (as infomaxloss does), or they "
            "are neither reproducible nor checkable")


def check_shuffled_codes_detached(model: InfoMaxVAE, x: Any, *, infomaxloss: Callable = infomaxloss,
                                  seed: int = 0, rtol: float = 1e-6, atol: float = 0.0) -> None:
    """The shuffled codes give the VAE no gradient.

    Evaluates ``infomaxloss(model.vae, model.mi, x, rng=...)`` twice with the same noise
    and two permutations of the shuffled codes (the identity, and a rotation that moves
    every code), and compares the gradients with respect to the VAE's parameters. The
    permutation enters only through the shuffled codes, which must be a constant for
    the VAE, so the two gradients must be equal (within ``rtol`` of each parameter's
    largest entry, plus ``atol``) while the values differ.

    ``infomaxloss`` is the loss under test, with the signature of
    :func:`autoencoder_toolkit.infomaxvaes.infomaxloss`; it must draw its noise and
    permutation from ``rng``.

    Raises ``AssertionError`` naming the first parameter whose gradient depends on the
    permutation.
    """
    model = _infomax(model, "check_shuffled_codes_detached")
    params = _trainable(model.vae, "vae")
    grads = []
    with quiet_small_batches():
        for order in ("identity", "roll"):
            draws = ScriptedDraws(seed, permutations=order)
            value = infomaxloss(model.vae, model.mi, x, rng=draws)
            _require_draws(draws, "infomaxloss")
            grads.append(_grads(value, params))
    found = _largest_difference(grads[1], grads[0], rtol, atol)
    if found is not None:
        name, diff, scale = found
        raise AssertionError(
            f"the shuffled codes give the VAE a gradient: with the same noise, permuting the shuffled codes "
            f"changes the gradient of infomaxloss with respect to {name} (by up to {diff:.3g}; its largest entry "
            f"is {scale:.3g}); {_DETACH_ADVICE}")


def check_critic_loss_routing(model: InfoMaxVAE, x: Any, *, miloss: Callable = miloss, seed: int = 0) -> None:
    """The critic's loss reaches every critic parameter, finitely, and gives the VAE no gradient.

    Evaluates ``miloss(model.vae, model.mi, x, rng=...)`` once and differentiates it:
    each trainable parameter of ``model.mi`` must receive a finite gradient (it takes
    part in the loss), and no parameter of ``model.vae`` any gradient, not even a zero
    one (the VAE is a constant in the critic's loss: outside its graph). ``miloss`` has the signature of
    :func:`autoencoder_toolkit.infomaxvaes.miloss`.
    """
    model = _infomax(model, "check_critic_loss_routing")
    with quiet_small_batches():
        value = miloss(model.vae, model.mi, x, rng=ScriptedDraws(seed))
    critic_params, vae_params = _trainable(model.mi, "mi"), _trainable(model.vae, "vae")
    grads = _grads(value, critic_params + vae_params)  # one backward pass
    critic = {name: grads[name] for name, _ in critic_params}
    unreached = [name for name, g in critic.items() if g is None]
    if unreached:
        raise AssertionError(f"the critic's loss gives no gradient to {name_list(unreached)}: every critic "
                             "parameter must take part in miloss")
    bad = [name for name, g in critic.items() if not bool(torch.isfinite(g).all())]
    if bad:
        raise AssertionError(f"the critic's loss gives a non-finite gradient to {name_list(bad)}")
    leaked = {name: grads[name] for name, _ in vae_params if grads[name] is not None}
    if leaked:
        name, g = next(iter(leaked.items()))
        raise AssertionError(
            f"the critic's loss gives the VAE a gradient ({name_list(list(leaked))}; {name} up to "
            f"{float(g.abs().max()):.3g}): evaluate the VAE without gradient in miloss (torch.no_grad() or detached "
            "codes), or the critic's step leaks into the encoder")


def _held(opt: torch.optim.Optimizer) -> set[int]:
    return {id(p) for g in opt.param_groups for p in g["params"]}


def _check_holdings(model: InfoMaxVAE, opt: Any) -> None:
    """``opt.vae`` holds exactly the VAE's trainable parameters and ``opt.mi`` exactly the critic's."""
    named = optimizers_of(opt)
    if set(named) != {"opt.vae", "opt.mi"}:
        raise TypeError(f"make_optimizers: expected an optimizer pair with fields vae and mi (as "
                        f"autoencoder_toolkit.setup gives for an InfoMaxVAE), got {', '.join(named) or 'none'}")
    networks = {"opt.vae": ("VAE", _trainable(model.vae, "vae"), _trainable(model.mi, "mi")),
                "opt.mi": ("critic", _trainable(model.mi, "mi"), _trainable(model.vae, "vae"))}
    everything = {id(p): n for n, p in model.named_parameters()}
    for oname, (network, own, other) in networks.items():
        held = _held(named[oname])
        foreign = [n for n, p in other if id(p) in held]
        if foreign:
            other_name = "critic" if network == "VAE" else "VAE"
            raise AssertionError(f"{oname} holds {len(foreign)} parameter(s) of the {other_name} "
                                 f"({name_list(foreign)}): each optimizer must hold only its own network's parameters "
                                 f"(the {network}'s)")
        outside = len(held - set(everything))
        if outside:
            raise AssertionError(f"{oname} holds {outside} tensor(s) that are not parameters of the model")
        missing = [n for n, p in own if id(p) not in held]
        if missing:
            raise AssertionError(f"{oname} does not hold {len(missing)} trainable parameter(s) of the {network} "
                                 f"({name_list(missing)}): they would never be trained")


class _Recorder:
    """Stands in for an optimizer's ``step``: records the gradients it would apply, changes nothing."""

    def __init__(self, params: Sequence[tuple[str, nn.Parameter]]) -> None:
        self.params = list(params)
        self.calls: list[dict[str, torch.Tensor | None]] = []

    def __call__(self, closure: Any = None) -> None:
        self.calls.append({n: (None if p.grad is None else p.grad.detach().clone()) for n, p in self.params})


def _recorded_step(model: InfoMaxVAE, x: Any, step: Step, make_optimizers: Callable, seed: int,
                   permutations: str) -> tuple[InfoMaxVAE, dict[str, _Recorder], ScriptedDraws]:
    """Run ``step`` on a fresh copy with both optimizers' ``step`` replaced by recorders."""
    twin, opt = fresh_copy(model, make_optimizers)
    names = {id(p): n for n, p in twin.named_parameters()}
    recorders = {}
    for oname, o in optimizers_of(opt).items():
        rec = _Recorder([(names[id(p)], p) for g in o.param_groups for p in g["params"] if id(p) in names])
        o.step = rec  # an instance attribute shadows the method for this copy only
        recorders[oname] = rec
    draws = ScriptedDraws(seed, permutations=permutations)
    step(twin, x, opt, rng=draws)
    for oname, rec in recorders.items():
        if not rec.calls:
            raise AssertionError(f"the step never called {oname}.step()")
    return twin, recorders, draws


def _expected_gradients(model: InfoMaxVAE, x: Any, draws: list, infomaxloss_fn: Callable,
                        miloss_fn: Callable) -> tuple[dict, dict]:
    """The gradients each optimizer should apply, from the losses at the draws the step made."""
    vae_draws = draws[:2]
    critic_draws = draws[2:4] if len(draws) >= 4 else draws[:2]
    vae_value = infomaxloss_fn(model.vae, model.mi, x, rng=PresetDraws(vae_draws))
    critic_value = miloss_fn(model.vae, model.mi, x, rng=PresetDraws(critic_draws))
    return _grads(vae_value, _trainable(model.vae, "vae")), _grads(critic_value, _trainable(model.mi, "mi"))


def _moves(model: InfoMaxVAE, x: Any, step: Step, make_optimizers: Callable, seed: int,
           every_parameter_moves: bool) -> None:
    """With one optimizer's step switched off, the step leaves that optimizer's network as it was."""
    network = {"vae": "VAE", "mi": "critic"}
    for still, moving in (("mi", "vae"), ("vae", "mi")):
        twin, opt = fresh_copy(model, make_optimizers)
        before = snapshot(twin)
        getattr(opt, still).step = lambda closure=None: None
        step(twin, x, opt, rng=ScriptedDraws(seed))
        changed = differences(twin, None, before)
        wrong = [n for n in changed if n.startswith(f"{still}.")]
        if wrong:
            raise AssertionError(
                f"with opt.{still}.step() switched off, the step still changed {name_list(wrong)} of the "
                f"{network[still]}: another optimizer holds them, or the step updates them itself")
        trainable = [f"{moving}.{n}" for n, p in getattr(twin, moving).named_parameters() if p.requires_grad]
        moved = [n for n in trainable if n in changed]
        if not moved:
            raise AssertionError(f"opt.{moving}.step() moved no parameter of the {network[moving]}")
        unmoved = [n for n in trainable if n not in moved]
        if every_parameter_moves and unmoved:
            raise AssertionError(f"opt.{moving}.step() did not move {name_list(unmoved)}")


def check_optimizer_routing(model: InfoMaxVAE, x: Any, *, step: Step | None = None,
                            make_optimizers: Callable[[nn.Module], Any] | None = None,
                            infomaxloss: Callable = infomaxloss, miloss: Callable = miloss, seed: int = 0,
                            rtol: float = 1e-4, atol: float = 1e-6, every_parameter_moves: bool = False) -> None:
    """Each optimizer of a training step receives its own loss's gradient and moves only its own network.

    ``step(model, x, opt, *, rng)`` is the step under test (default: the package's
    ``train_``), ``make_optimizers(model)`` builds its optimizer pair ``(vae, mi)``
    (default: Adam, ``lr=1e-2``). On fresh copies of ``model``:

    1. ``opt.vae`` holds exactly the VAE's trainable parameters, ``opt.mi`` exactly the
       critic's;
    2. with both optimizers' ``step()`` replaced by recorders, one step is run twice,
       with the same noise and two permutations of the shuffled codes: the gradient
       ``opt.vae`` would apply must not depend on the permutation (the shuffled codes
       give the VAE no gradient: equal within ``1e-6`` of each parameter's largest
       entry), and must equal the gradient of ``infomaxloss`` with respect to the VAE at
       the draws the step made; the gradient ``opt.mi`` would
       apply must equal that of ``miloss`` with respect to the critic (draws 3 and 4 of
       the step, or the first two when the step draws only one noise array and one
       permutation, as the fused step does). Equal means within ``rtol`` of each
       parameter's largest entry plus ``atol``;
    3. with ``opt.mi.step()`` switched off a real step leaves the critic exactly as it
       was and moves the VAE, and the other way round (``every_parameter_moves``:
       every trainable parameter of the stepped network must move).

    Raises ``AssertionError`` naming the optimizer, the parameter and what reached it.
    """
    model = _infomax(model, "check_optimizer_routing")
    step = library_step() if step is None else step
    make_optimizers = default_optimizers if make_optimizers is None else make_optimizers
    twin, opt = fresh_copy(model, make_optimizers)
    _check_holdings(twin, opt)
    with quiet_small_batches():
        runs = {}
        for order in ("identity", "roll"):
            twin, recorders, draws = _recorded_step(model, x, step, make_optimizers, seed, order)
            runs[order] = (twin, recorders, draws)
        twin, recorders, draws = runs["identity"]
        if draws.n_noise == 0 or draws.n_permutations == 0:
            raise AssertionError(f"the step drew {draws.n_noise} noise array(s) and {draws.n_permutations} "
                                 "permutation(s) from rng: an InfoMax-VAE step must draw its noise and its "
                                 "permutations from rng= to be reproducible and checkable")
        vae_a = recorders["opt.vae"].calls[0]
        vae_b = runs["roll"][1]["opt.vae"].calls[0]
        found = _largest_difference(vae_b, vae_a, min(rtol, 1e-6), 0.0)  # the same computation: equal
        if found is not None:
            name, diff, scale = found
            raise AssertionError(
                f"the shuffled codes give the VAE a gradient in the step: with the same noise, permuting the shuffled "
                f"codes changes the gradient opt.vae applies to {name} (by up to {diff:.3g}; its largest entry is "
                f"{scale:.3g}); {_DETACH_ADVICE}")
        # the parameters the step saw: the model's own (the recorders stepped nothing)
        expected_vae, expected_mi = _expected_gradients(fresh_copy(model, None)[0], x, draws.draws, infomaxloss,
                                                        miloss)
        for oname, expected, loss_name, network in (("opt.vae", expected_vae, "infomaxloss", "VAE"),
                                                    ("opt.mi", expected_mi, "miloss", "critic")):
            found = _largest_difference(recorders[oname].calls[0], expected, rtol, atol)
            if found is not None:
                name, diff, scale = found
                raise AssertionError(
                    f"{oname} was stepped with a gradient that is not the gradient of {loss_name} with respect to the "
                    f"{network}: {name} differs by up to {diff:.3g} (its largest entry is {scale:.3g}); each optimizer "
                    "must receive only its own loss's gradient (zero the gradients before each loss's backward pass, "
                    "and differentiate each loss with respect to its own network only)")
        _moves(model, x, step, make_optimizers, seed, every_parameter_moves)


def check_gradient_routing(model: InfoMaxVAE, x: Any, *, step: Step | None = None,
                           make_optimizers: Callable[[nn.Module], Any] | None = None,
                           infomaxloss: Callable = infomaxloss, miloss: Callable = miloss, seed: int = 0) -> None:
    """:func:`check_shuffled_codes_detached`, :func:`check_critic_loss_routing` and :func:`check_optimizer_routing`."""
    check_shuffled_codes_detached(model, x, infomaxloss=infomaxloss, seed=seed)
    check_critic_loss_routing(model, x, miloss=miloss, seed=seed)
    check_optimizer_routing(model, x, step=step, make_optimizers=make_optimizers, infomaxloss=infomaxloss,
                            miloss=miloss, seed=seed)
