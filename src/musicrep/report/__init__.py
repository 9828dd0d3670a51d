"""Report: tables, figures and maps rendered from result files.

``tables`` writes the markdown (Tables 1-4, retrieval), ``figures`` the PNGs
(matplotlib), ``write`` the report folder (``report.md``, ``results.json``);
computing the results is :mod:`musicrep.evaluation`'s job.
"""
