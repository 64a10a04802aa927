"""Diffing methods on one interface (issue 23): the crosscoder, a diff-SAE, the activation-difference lens, persona
vector projection and activation fuzzing, each fitted on a training run and returning ranked candidates
(`MethodResult`), labelled by the crosscoder pipeline's labeller wherever a candidate is a direction.

    from crosscoder.analysis.methods import open_method_run, run_methods
"""

from crosscoder.analysis.methods import adl, crosscoder_method, diff_sae, fuzzing, persona_vectors
from crosscoder.analysis.methods.base import (
    METHODS,
    DiffingMethod,
    MethodCandidate,
    MethodResult,
    MethodRun,
    get_method,
)
from crosscoder.analysis.methods.config import MethodsConfig
from crosscoder.analysis.methods.runner import open_method_run, run_method, run_methods

__all__ = ["METHODS", "DiffingMethod", "MethodCandidate", "MethodResult", "MethodRun", "MethodsConfig", "adl",
           "crosscoder_method", "diff_sae", "fuzzing", "get_method", "open_method_run", "persona_vectors",
           "run_method", "run_methods"]  # fmt: skip
