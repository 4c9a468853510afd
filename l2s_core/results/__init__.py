"""A finished study's results: the study folder read once (:mod:`~l2s_core.results.study_results`),
the paper's tables and tests (:mod:`~l2s_core.results.analysis`, :mod:`~l2s_core.results.stats`),
the Findings and claims scorecard (:mod:`~l2s_core.results.findings`), the figures
(:mod:`~l2s_core.results.plots`) and the declared differences from the paper
(:mod:`~l2s_core.results.fidelity`). The analysis notebook draws the report from them."""
