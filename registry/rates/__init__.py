"""指标与月报 The rates layer, above the registry core: the indicator definitions and their set-based
SQL (``indicators``), the patient-month state (``month_state``), frozen months (``snapshots``),
target sets (``targets``), the month's rates of a region (``compute``) and the PDF report
(``reporting``). It uses the core only; the scheduler, the web and the command use it."""
