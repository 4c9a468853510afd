"""Built-in phantoms: MSD-layout tasks of synthetic CT/MR scans with the paper's five organs at
their real sizes, shapes and intensities, so that a study runs without downloading data.

The anatomy (:mod:`~l2s_core.data.phantom.anatomy`) is placed by the geometry
(:mod:`~l2s_core.data.phantom.geometry`), drawn by the renderer
(:mod:`~l2s_core.data.phantom.render`) and written as a task (:mod:`~l2s_core.data.phantom.task`).
"""
