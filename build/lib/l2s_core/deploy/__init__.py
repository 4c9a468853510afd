"""Using a trained study outside it: export a model folder (:mod:`~l2s_core.deploy.export`), check it
(:mod:`~l2s_core.deploy.model_folder`) and segment new scans with it (:mod:`~l2s_core.deploy.predict`)."""
