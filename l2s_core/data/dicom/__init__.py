"""DICOM in and out: reading CT/MR series (:mod:`~l2s_core.data.dicom.series`), importing series
and their RTSTRUCTs as an MSD-layout task (:mod:`~l2s_core.data.dicom.import_task`), RTSTRUCT
reading and writing (:mod:`~l2s_core.data.dicom.rtstruct`, with the decimal-string reader of
:mod:`~l2s_core.data.dicom.numbers`) and DICOM SEG output (:mod:`~l2s_core.data.dicom.seg`).
pydicom and highdicom are the optional ``dicom`` extra."""
