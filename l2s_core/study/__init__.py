"""Running a study: parameter files, the Papermill runner, the notebook steps and the report.

Modules (imported one by one, so that a notebook loading :mod:`~l2s_core.study.plan` does not
load torch):

* :mod:`~l2s_core.study.params`: ``papermill_params/<study>.yaml`` → validated :class:`StudyParams`;
* :mod:`~l2s_core.study.layout`: where a study's files live (:class:`Step`, :class:`StudyPaths`);
* :mod:`~l2s_core.study.plan`: the study's units, their needs and which step is ready;
* :mod:`~l2s_core.study.step_records`: a step's record (:class:`StepRecord`) and the study lock;
* :mod:`~l2s_core.study.execute`: one step: its notebook through Papermill (or the report), its record;
* :mod:`~l2s_core.study.runner`: :func:`run_study` (``l2s run``): which step runs when, and where;
* :mod:`~l2s_core.study.steps`: what the prepare, train and evaluate notebooks do;
* :mod:`~l2s_core.study.report`: :func:`render_report` (``l2s report``).
"""
