"""Using a trained study outside it: export a model folder (:mod:`~l2s_core.deploy.export`), check it
(:mod:`~l2s_core.deploy.model_folder`), build its networks (:mod:`~l2s_core.deploy.loaded_model`),
read and check new scans for it (:mod:`~l2s_core.deploy.scan_input`) and segment them
(:mod:`~l2s_core.deploy.predict`)."""
