"""A model report as text: the held-out metrics a run's summary and ``evaluate`` print."""

from __future__ import annotations

from .metrics import ModelReport

__all__ = ["report_lines", "format_number"]


def format_number(v: float) -> str:
    """A loss for a summary line: three decimals, or four significant digits when large."""
    return f"{v:.3f}" if abs(v) < 1e6 else f"{v:.4g}"


def report_lines(report: ModelReport, where: str) -> list[str]:
    """The lines that present ``report`` (measured on ``where``, e.g. "the held-out split")."""
    def row(label: str, value: str, note: str = "") -> str:
        return f"  {label:<36}{value:>9}" + (f"  {note}" if note else "")

    e = report.elbo
    lines = [f"Held-out metrics ({report.n} samples of {where}; nats per sample)",
             row("reconstruction log-likelihood", f"{e.reconstruction:.3f}"),
             row("KL(q(z|x) || p(z))", f"{e.kl:.3f}"),
             row("ELBO", f"{e.elbo:.3f}")]
    if report.mutual_info is not None:
        mi = report.mutual_info
        lines.append(row(f"MI estimate (critic, {len(mi.values)} shuffles)", f"{mi.mean:.3f}", f"± {mi.std:.3f}"))
    else:
        lines.append(row("MI estimate", "n/a", "(a VAE has no critic)"))
    au, aus = report.active_units, report.active_units_sampled
    lines.append(row(f"active units (Var μ ≥ {au.threshold:g})", f"{au.count} / {report.latent_dim}"))
    lines.append(row(f"active units (20 draws, Var ≥ {aus.threshold:g})", f"{aus.count} / {report.latent_dim}",
                     "(variance of the mean of 20 sampled codes)"))
    if report.accuracy is not None:
        note = "(logistic regression on μ" + (", fit on the training split)" if "training" in
                                                (report.accuracy_protocol or "") else ", 70/30 split)")
        lines.append(row("latent classification accuracy", f"{report.accuracy:.3f}", note))
    else:
        lines.append(row("latent classification accuracy", "n/a", "(no labels)"))
    return lines
