"""Training one network run; each module holds one job:

* :mod:`~l2s_core.train.config`: :class:`~l2s_core.train.config.TrainConfig` (a run's settings,
  its ``config.json``) and the convergence rule; no torch.
* :mod:`~l2s_core.train.run_files`: the files of a run folder and their readers; no torch.
* :mod:`~l2s_core.train.commit`: what a run leaves in its folder after each epoch (committed
  atomically), settling the folder after an interruption, the resume state, the summary.
* :mod:`~l2s_core.train.loop`: the paper's protocol in one process: training patches, validation
  Dice, the optimisation step and epoch.
* :mod:`~l2s_core.train.launch`: :func:`~l2s_core.train.launch.train_run`, which trains in this
  process, joins a ``torchrun`` launch or spawns data-parallel processes.
* ``__main__``: the command line ``python -m l2s_core.train CONFIG.json`` (also under ``torchrun``).

This file imports nothing, so that the torch-free modules stay torch-free.
"""
