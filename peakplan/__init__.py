"""peakplan: get an operation ready for a demand peak.

Stages, in pipeline order (each hands a frozen, array-based object to the next):

1. ``load_scenario``   scenario YAML + CSV/Parquet tables, validated        -> Scenario
2. ``build_pack``      arrays, definitions, anomaly flags, constraints       -> PlanningPack
3. ``simulate``        vectorized Monte Carlo over paths                     -> SimResult
4. ``optimize``        two-stage stochastic LP (SAA, Benders)                -> {name: Plan}
5. ``compare``         out-of-sample scoring, stress tests, recommendation   -> DataFrame
6. ``run``             the whole pipeline, written to a run directory        -> RunResult
"""

from importlib.metadata import version

from peakplan import plans
from peakplan.compile import build_pack
from peakplan.config import Scenario
from peakplan.errors import ContractViolation, InfeasibleError, InputError, PeakplanError, SolverError
from peakplan.loaders import load_scenario
from peakplan.optimize import optimize
from peakplan.pack import PlanningPack
from peakplan.score import Scorecard, compare, scorecard
from peakplan.simulate.mc import SimResult, simulate

__version__ = version("peakplan")

__all__ = [
    "ContractViolation",
    "InfeasibleError",
    "InputError",
    "PeakplanError",
    "PlanningPack",
    "Scenario",
    "Scorecard",
    "SimResult",
    "SolverError",
    "__version__",
    "build_pack",
    "compare",
    "load_scenario",
    "optimize",
    "plans",
    "run",
    "scorecard",
    "simulate",
]


def run(scenario, out=None, **kwargs):
    """The whole pipeline, as ``peakplan run`` does it (see :func:`peakplan.pipeline.run`)."""
    from peakplan.pipeline import run as _run

    return _run(scenario, out, **kwargs)
