"""The application layer: one composition root (:mod:`lepton_platform.api.job`) that turns
names or objects into a job, and everything built on it: :mod:`~lepton_platform.api.transfer`,
:mod:`~lepton_platform.api.compare`, :mod:`~lepton_platform.api.evaluate`, saved models
(:mod:`~lepton_platform.api.predictor`), run folders (:mod:`~lepton_platform.api.runs`,
:mod:`~lepton_platform.api.run`), configs (:mod:`~lepton_platform.api.config`), tuning,
ranking, the cross-domain matrix and multi-domain training.

The public names are on the top-level package (``lp.transfer``, ``lp.compare``, ``lp.load``,
...); this package re-exports nothing, so that a module and a function never share a name.
"""
