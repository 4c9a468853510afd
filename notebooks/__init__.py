"""The study notebooks (prepare, train, evaluate, analysis, explore), shipped in the wheel as ``l2s_core.notebooks``."""
