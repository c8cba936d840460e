"""One record per sampler: everything the suite knows of a sampler, in one place.

Adding a sampler is adding one `SamplerRecord` to `RECORDS`. What reads the records:

- `lib.diffusion.teleport` (`SAMPLERS`, the functions by name, and `nfe`, the cost of a schedule), and through it
  `lib.diffusion.samplers.heun_nfe` and the C6 sweep (`lib.analysis.teleportation`, `SAMPLER_LABELS`);
- `lib.experiments.teleportation` (what each sampler `needs`: DPM-Solver-v3's statistics of the network);
- `lib.verdicts.findings` (`SAMPLER_NAMES`, the short names of the scorecard's findings);
- `lib.plotting.teleportation` and notebook 07 (labels, nominal orders and colours of its figures and checks).

Every sampler takes (denoiser, x at sigmas[0], sigmas) and integrates the probability-flow ODE
dx/dsigma = (x - D(x; sigma)) / sigma down the schedule. The nominal order is that of the global error in the
step size on a smooth ODE; notebook 07 measures each one against the Gaussian closed form.

This module imports no torch: the verdicts' command line reads the names without loading it, and a record's
function is imported when it is first asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

#: How a sampler spends network evaluations on a schedule of len(sigmas) levels.
PER_STEP = "one per step"  # Euler and the multistep methods: len(sigmas) - 1
HEUN = "two per step, one for a step to sigma = 0"  # EDM's Heun: no correction on the last step to 0


@dataclass(frozen=True)
class SamplerRecord:
    """A sampler: its name (the key of caches and tables), where its function lives, how it spends evaluations
    (`evaluations`: PER_STEP or HEUN), its nominal order, and how figures (`label`, `colour`) and the scorecard
    (`short`) name it."""

    name: str
    module: str
    function_name: str
    evaluations: str
    nominal_order: int
    label: str
    short: str
    colour: str
    #: what the sampler needs besides (denoiser, x, sigmas), passed as keyword arguments by whoever runs it:
    #: "ems", the model's empirical statistics (`lib.diffusion.ems`), estimated once per network
    needs: tuple[str, ...] = ()

    @property
    def function(self) -> Callable[..., Any]:
        """The sampler itself, `(denoiser, x, sigmas, ...) -> x at sigmas[-1]`."""
        return getattr(importlib.import_module(self.module), self.function_name)

    def nfe(self, sigmas: Sequence[float]) -> int:
        """Network evaluations of this sampler on the schedule `sigmas` (len(sigmas) - 1 steps)."""
        steps = len(sigmas) - 1
        if self.evaluations == HEUN:
            return 2 * steps - int(float(sigmas[-1]) == 0.0)
        return steps


RECORDS: dict[str, SamplerRecord] = {r.name: r for r in (
    SamplerRecord("euler", "lib.diffusion.samplers", "sample_euler", PER_STEP, 1, "Euler", "Euler", "C7"),
    SamplerRecord("heun", "lib.diffusion.samplers", "sample_heun", HEUN, 2, "Heun (EDM)", "Heun", "C0"),
    SamplerRecord("dpmpp_2m", "lib.diffusion.multistep", "sample_dpmpp_2m", PER_STEP, 2, "DPM-Solver++(2M)",
                  "DPM-Solver++(2M)", "C1"),
    # bh2 with order=2: a second-order predictor (UniP-2) and the UniC corrector, which raises the order by one at
    # no extra evaluation (it reuses the next step's), so nominally third order
    SamplerRecord("unipc", "lib.diffusion.multistep", "sample_unipc", PER_STEP, 3, "UniPC (bh2, UniP-2 + UniC)",
                  "UniPC", "C2"),
    # the official options per step count (order 3, pseudo-order predictor at <= 5 steps, corrector at <= 6), with
    # the empirical model statistics of the network it samples (`lib.diffusion.ems`)
    SamplerRecord("dpm_solver_v3", "lib.diffusion.dpm_solver_v3", "sample_dpm_solver_v3_official", PER_STEP, 3,
                  "DPM-Solver-v3 (EMS of our network)", "DPM-Solver-v3", "C4", needs=("ems",)),
)}
