"""Checked derivations: the site's math, every step verified by SymPy (the ``derivations`` extra).

``pip install "diffusion-core-torch[derivations]"`` adds SymPy; ``import diffusion_core`` never imports this
package. The site's pages are ``diffusion_core.derivations.<part>.<page>`` (the authors' guide is README.md
beside this file in the repository; the wheel ships only the modules); page modules import everything they
need from here::

    from diffusion_core.derivations import Derivation, E, Var, Model, derivation, normal
"""
from ._checks import (Check, StepFailure, antiderivative, are_equal, assumption, definition, is_zero, jensen,
                      ratio_is_one, resolve, under, uses)
from ._discover import discover
from ._evaluate import Model, free_random
from ._framework import Derivation, DerivationError, DerivationSpec, Report, derivation
from ._notation import (ELBO, KL, Cov, E, Expectation, GaussPdf, H, Pdf, Pr, RandomVariable, Var,
                        random_variables)
from ._printing import ordered, tex, times
from ._spaces import density, discrete, from_stats, normal

__all__ = [
    "Check", "Cov", "Derivation", "DerivationError", "DerivationSpec", "E", "ELBO",
    "Expectation", "GaussPdf", "H", "KL", "Model", "Pdf", "Pr", "RandomVariable", "Report",
    "StepFailure", "Var", "density", "ordered", "derivation", "discover", "discrete", "free_random",
    "from_stats", "antiderivative", "are_equal", "assumption", "definition", "is_zero", "jensen", "normal",
    "random_variables",
    "ratio_is_one", "resolve", "tex",
    "times", "under",
    "uses",
]
