"""DPM-Solver-v3 (Zheng, Lu, Chen, Zhu, NeurIPS 2023, arXiv:2310.13268): multistep predictor-corrector with EMS.

Same call as `lib.diffusion.multistep`: `sample_dpm_solver_v3(denoiser, x, sigmas, ems=..., ...)`, `x` at
sigmas[0], one network evaluation per step (NFE = len(sigmas) - 1), the step to sigma = 0 is x = D.

In EDM's variables (alpha = 1, lambda = -log sigma; `lib.diffusion.ems` shows why the paper's VP formulas carry
over unchanged) the ODE is dx/dlambda = -l x - f with f = (x - D) - l x. With L, S the integrals of l, s,

    g(lambda) = e^{-(S_lambda - S_s)} f(lambda) - E(lambda)                                   (paper eq. (8))
    E(lambda) = int_{lambda_s}^{lambda} e^{-(S_r - S_s)} b_r dr
    x_t = e^{-(L_t - L_s)} x_s - sum_k c_k psi_k - beta                                  (paper eqs. (9), (14))
    psi_k = int_{lambda_s}^{lambda_t} W(lambda) (lambda - lambda_s)^k dlambda
    W(lambda) = e^{(L_lambda - L_t) + (S_lambda - S_s)}
    beta  = int_{lambda_s}^{lambda_t} W(lambda) E(lambda) dlambda,

where g(lambda) ~ sum_k c_k (lambda - lambda_s)^k is the Taylor polynomial of g at lambda_s, its coefficients
estimated from the stored values g_j at earlier points (the predictor: lambda_s, lambda_{s-1}, ...) or at the new
point too (the corrector: lambda_s, lambda_t, lambda_{s-1}, ...; paper eq. (15)): by solving the Vandermonde
system (full order n + 1 with n extra points), or with `pseudo` by Newton divided differences, c_k = D_k[0]
(the official code's pseudo-order: only the top coefficient is of full accuracy, so beyond 2 the order is 2).
The corrector reuses the evaluation at the predicted point: after correcting x_t, f_t is kept and
D_t = (1 - l_t) x_t - f_t (the official code keeps N = sigma eps - l x likewise), so the NFE does not change.

Orders, as the official sampler: predictor of order min(order, steps so far + 1), and with `lower_order_final`
min(.., steps left) (so the last step is first order); the corrector of the point just reached has the order of
the predictor that reached it (+1 with `c_pseudo`), and runs only when that is above 1.

Statistics on the schedule: the official code rounds every step's lambda to the nearest point of the EMS grid
(it moves the schedule). Here the schedule is kept exactly (teleportation starts at sigma_skip exactly), and the
EMS are interpolated linearly in lambda between grid points; L and S are then exact piecewise quadratics, and
psi_k, beta and E are Gauss-Legendre sums (8 nodes on each piece between grid points, nested for E), accurate to
rounding. With the degenerate statistics (l, s, b) = (1, 0, 0) (`ems=None`) this is DPM-Solver++ exactly:
order 1 is DDIM (`sample_unipc(order=1, use_corrector=False)`), order 2 without corrector the multistep
DPM-Solver++(2M) with the exact phi_2 coefficient (diffusers' solver_type="heun"), not k-diffusion's midpoint
form in `sample_dpmpp_2m` (which differ at O(h^3) per step).

`official_options(steps)` gives the official EDM codebase's choices per step count (order 3, pseudo predictor
at <= 5 steps, corrector at <= 6 steps, lower-order final steps).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lib.diffusion.ems import EMS, degenerate_ems
from lib.diffusion.samplers import Callback, ode_sampler, steps
from lib.models.denoisers import Denoiser

F64 = torch.float64
GAUSS_NODES = 8
_XI, _WI = np.polynomial.legendre.leggauss(GAUSS_NODES)
RANGE_TOLERANCE = 1e-9  # lambda may overshoot the EMS grid by this much (rounding of sigma_max, sigma_min)


def logsnr_sigmas(n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, append_zero: bool = True) -> torch.Tensor:
    """n levels uniform in lambda = -log sigma from sigma_max to sigma_min (the official 'logSNR' schedule),
    then 0 (float64, descending)."""
    if n < 2:
        raise ValueError(f"a logSNR schedule needs at least 2 levels, got {n}")
    sigmas = torch.exp(-torch.linspace(-math.log(sigma_max), -math.log(sigma_min), n, dtype=F64))
    sigmas[0], sigmas[-1] = sigma_max, sigma_min
    return torch.cat([sigmas, sigmas.new_zeros(1)]) if append_zero else sigmas


def official_options(steps: int) -> dict:
    """The official EDM sampling script's options for `steps` steps (codebases/edm/sample.py)."""
    return {"order": 3, "p_pseudo": steps <= 5, "use_corrector": steps <= 6, "c_pseudo": False,
            "lower_order_final": True}


class EMSTables:
    """The EMS on their grid (float64, on a device), linear in lambda between grid points, with the exact
    cumulative integrals L, S (piecewise quadratic), and the step integrals of the module docstring."""

    def __init__(self, ems: EMS, device: torch.device | str = "cpu") -> None:
        self.grid = torch.as_tensor(ems.lambdas, dtype=F64, device=device)
        self.fields = {k: torch.as_tensor(getattr(ems, k), dtype=F64, device=device) for k in ("l", "s", "b")}
        width = torch.diff(self.grid).reshape(-1, *[1] * (self.fields["l"].ndim - 1))
        for name, field in (("L", "l"), ("S", "s")):
            v = self.fields[field]
            steps = 0.5 * width * (v[1:] + v[:-1])  # exact: the integrand is linear on each piece
            self.fields[name] = torch.cat([torch.zeros_like(v[:1]), torch.cumsum(steps, 0)])
        self.lo, self.hi = float(self.grid[0]), float(self.grid[-1])

    def check_range(self, lambdas: list[float]) -> None:
        bad = [lam for lam in lambdas if not self.lo - RANGE_TOLERANCE <= lam <= self.hi + RANGE_TOLERANCE]
        if bad:
            raise ValueError(f"the EMS cover sigma in [{math.exp(-self.hi):.6g}, {math.exp(-self.lo):.6g}]; "
                             f"the schedule reaches sigma = {math.exp(-bad[0]):.6g} (estimate them on a wider grid)")

    def at(self, name: str, lam: torch.Tensor | float) -> torch.Tensor:
        """Field `name` (l, s, b linear; L, S their integrals from grid[0]) at the points `lam` (P,) -> (P, ...)."""
        lam = torch.as_tensor(lam, dtype=F64, device=self.grid.device).reshape(-1).clamp(self.lo, self.hi)
        j = (torch.searchsorted(self.grid, lam, right=True) - 1).clamp(0, len(self.grid) - 2)
        shape = (-1, *[1] * (self.fields["l"].ndim - 1))
        tau = (lam - self.grid[j]).reshape(shape)
        width = (self.grid[j + 1] - self.grid[j]).reshape(shape)
        if name in ("L", "S"):
            v = self.fields[name.lower()]
            slope = (v[j + 1] - v[j]) / width
            return self.fields[name][j] + v[j] * tau + 0.5 * slope * tau * tau
        v = self.fields[name]
        return v[j] + (v[j + 1] - v[j]) * (tau / width)

    def _gauss(self, a: float, b: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gauss-Legendre nodes and weights on [a, b] (a < b), split at the grid points, and each node's piece start."""
        inner = [float(g) for g in self.grid if a < float(g) < b]
        edges = np.array([a, *inner, b])
        lo, hi = edges[:-1, None], edges[1:, None]
        nodes = lo + (hi - lo) * (_XI[None] + 1) / 2
        weights = (hi - lo) / 2 * _WI[None]
        starts = np.broadcast_to(lo, nodes.shape)
        dev = self.grid.device
        return tuple(torch.as_tensor(np.ascontiguousarray(t).reshape(-1), dtype=F64, device=dev)
                     for t in (nodes, weights, starts))

    def _b_integrand(self, lam: torch.Tensor, lam_s: float) -> torch.Tensor:
        """e^{-(S_r - S_s)} b_r at the points `lam`."""
        return torch.exp(-(self.at("S", lam) - self.at("S", lam_s))) * self.at("b", lam)

    def e_integral(self, lam_s: float, lam: float) -> torch.Tensor:
        """E(lam) = int_{lam_s}^{lam} e^{-(S_r - S_s)} b_r dr (either order of the ends)."""
        if lam == lam_s:
            return torch.zeros_like(self.fields["b"][0])
        a, b = min(lam, lam_s), max(lam, lam_s)
        nodes, weights, _ = self._gauss(a, b)
        total = _weighted(weights, self._b_integrand(nodes, lam_s))
        return total if lam > lam_s else -total

    def step(self, lam_s: float, lam_t: float, n_terms: int) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """(e^{-(L_t - L_s)}, [psi_0, ..., psi_{n_terms-1}], beta) for the step from lam_s to lam_t > lam_s."""
        nodes, weights, starts = self._gauss(lam_s, lam_t)
        weight_fn = torch.exp(self.at("L", nodes) - self.at("L", lam_t) + self.at("S", nodes) - self.at("S", lam_s))
        shape = (-1, *[1] * (weight_fn.ndim - 1))
        offsets = (nodes - lam_s).reshape(shape)
        psis = [_weighted(weights, weight_fn * offsets**k) for k in range(n_terms)]
        # E at the nodes: whole pieces before the node's piece, then Gauss-Legendre from the piece start to the node.
        integrand = self._b_integrand(nodes, lam_s) * weights.reshape(shape)
        piece = torch.arange(len(nodes), device=nodes.device) // GAUSS_NODES
        per_piece = torch.zeros((int(piece[-1]) + 1, *integrand.shape[1:]), dtype=F64, device=nodes.device)
        per_piece.index_add_(0, piece, integrand)
        before = torch.cumsum(per_piece, 0) - per_piece
        xi = torch.as_tensor(_XI, dtype=F64, device=nodes.device)
        wi = torch.as_tensor(_WI, dtype=F64, device=nodes.device)
        half = (nodes - starts) / 2
        sub_nodes = (starts[:, None] + half[:, None] * (xi[None] + 1)).reshape(-1)
        sub = self._b_integrand(sub_nodes, lam_s).reshape(len(nodes), GAUSS_NODES, *integrand.shape[1:])
        partial = (sub * (half[:, None] * wi[None]).reshape(len(nodes), GAUSS_NODES, *[1] * (sub.ndim - 2))).sum(1)
        e_nodes = before[piece] + partial
        beta = _weighted(weights, weight_fn * e_nodes)
        decay = torch.exp(-(self.at("L", lam_t) - self.at("L", lam_s)))[0]
        return decay, psis, beta


def _weighted(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return (values * weights.reshape(-1, *[1] * (values.ndim - 1))).sum(0)


def taylor_coefficients(lams: list[float], gs: list[torch.Tensor], pseudo: bool) -> list[torch.Tensor]:
    """c_1..c_n of g(lambda) ~ g_0 + sum_k c_k (lambda - lams[0])^k through the n + 1 points (lams, gs).

    Full: the Vandermonde system sum_k c_k (lams[j] - lams[0])^k = g_j - g_0, j = 1..n (order n + 1).
    Pseudo: Newton divided differences c_k = g[lams_0, ..., lams_k] (the official pseudo-order)."""
    n = len(lams) - 1
    if n == 0:
        return []
    if pseudo:
        table, coeffs = list(gs), []
        for k in range(1, n + 1):
            table = [(table[j] - table[j + 1]) / (lams[j] - lams[j + k]) for j in range(n - k + 1)]
            coeffs.append(table[0])
        return coeffs
    dl = np.array(lams[1:]) - lams[0]
    inverse = np.linalg.inv(np.stack([dl**k for k in range(1, n + 1)], axis=1))
    diffs = [g - gs[0] for g in gs[1:]]
    return [sum(float(inverse[k, j]) * diffs[j] for j in range(n)) for k in range(n)]


def _update(tables: EMSTables, points: list[tuple[float, torch.Tensor, torch.Tensor]], lam_t: float,
            pseudo: bool) -> torch.Tensor:
    """x at lam_t from the base point points[0] = (lam_s, x_s, f_s) and the others (lam_j, _, f_j)."""
    lam_s, x_s, _ = points[0]
    s_base = tables.at("S", lam_s)
    lams, gs = [], []
    for lam_j, _, f_j in points:
        ds = tables.at("S", lam_j) - s_base
        gs.append(torch.exp(-ds)[0] * f_j - tables.e_integral(lam_s, lam_j))
        lams.append(lam_j)
    decay, psis, beta = tables.step(lam_s, lam_t, len(points))
    x_t = decay * x_s - psis[0] * gs[0] - beta
    for psi, c in zip(psis[1:], taylor_coefficients(lams, gs, pseudo), strict=True):
        x_t = x_t - psi * c
    return x_t.to(x_s.dtype)


@ode_sampler
def sample_dpm_solver_v3(
    denoiser: Denoiser, x: torch.Tensor, levels: list[float], ems: EMS | None = None, order: int = 3,
    p_pseudo: bool = False, use_corrector: bool = True, c_pseudo: bool = False, lower_order_final: bool = True,
    progress: bool = False, callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver-v3 predictor (order 1-3) and corrector on the schedule `sigmas` (module docstring).

    `ems`: the model's statistics (`lib.diffusion.ems`); None gives the degenerate ones, (1, 0, 0), which make it
    DPM-Solver++. NFE = len(sigmas) - 1. Nominal global order: `order` (2 when `p_pseudo` and order > 2)."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver-v3 order must be 1, 2 or 3, got {order}")
    positive = [s for s in levels if s > 0]
    if ems is None:
        ems = degenerate_ems(tuple(x.shape[1:]), 1, 2.0 * positive[0], 0.5 * positive[-1])
    if tuple(ems.shape) != tuple(x.shape[1:]):
        raise ValueError(f"EMS of shape {ems.shape} for images of shape {tuple(x.shape[1:])}")
    tables = EMSTables(ems, x.device)
    tables.check_range([-math.log(s) for s in positive])
    positive_steps = len(positive) - 1
    history: list[tuple[float, torch.Tensor, torch.Tensor]] = []  # (lambda, x, f), newest last
    last_order = 0
    for i, sigma, sigma_next in steps(levels, progress, "DPM-Solver-v3"):
        lam = -math.log(sigma)
        denoised = denoiser(x, sigma)
        l_here = tables.at("l", lam)[0]
        f = ((x - denoised) - l_here * x).to(F64)
        history = [*history, (lam, x, f)][-(order + 2):]
        corrector_order = last_order + int(c_pseudo)
        if use_corrector and i > 0 and corrector_order > 1:
            newest_first = history[::-1]  # t (just reached), s, s-1, ...: the official order s, t, s-1, ...
            points = [newest_first[1], newest_first[0], *newest_first[2:corrector_order]]
            x = _update(tables, points, lam, c_pseudo)
            history[-1] = (lam, x, f)
            denoised = ((1 - l_here) * x - f).to(x.dtype)
        if sigma_next == 0:
            x_next = denoised
        else:
            p = min(order, i + 1, positive_steps - i if lower_order_final else order)
            x_next = _update(tables, history[::-1][:p], -math.log(sigma_next), p_pseudo)
            last_order = p
        if callback is not None:
            callback({"i": i, "sigma": sigma, "sigma_next": sigma_next, "x": x_next, "denoised": denoised})
        x = x_next
    return x


def sample_dpm_solver_v3_official(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, ems: EMS | None = None,
                                  progress: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """`sample_dpm_solver_v3` with the official options for this schedule's number of steps (`official_options`):
    the form the sampler records and notebook 07 run, so that every budget is sampled as the authors of
    DPM-Solver-v3 would sample it."""
    return sample_dpm_solver_v3(denoiser, x, sigmas, ems=ems, progress=progress, callback=callback,
                                **official_options(len(sigmas) - 1))
