"""
gilora_theory.experiments: the paper's claims, sweeps, tables and figures
=========================================================================

Everything here runs the numerical core on data from :mod:`gilora_theory.data`
and turns the results into verdicts, tidy tables and pictures.

sweep         -- resumable sweeps (layers x methods x bits x ranks x seeds) into tidy
                 tables with every bound link, through any ``concurrent.futures.Executor``
                 or on a Dask cluster; concurrent sweeps into one folder share the work
paper         -- the claims C1..C15 of the paper, one function each, judged on given data
equal_storage -- error against effective bits for every method; winners per budget (C15)
allocation    -- bits and rank per layer under one storage budget: bound, measured, uniform;
                 exact multiple-choice knapsack with its optimality gap (C16)
report        -- ``gilora-theory check``: verdict table, report.md, report.json, figures
plotting      -- every figure from saved tables (matplotlib, Agg)
configs/      -- the packaged sweep configurations (``gilora-theory sweep NAME``)

Import direction: this sub-package uses the core and :mod:`gilora_theory.data`;
neither imports it. pandas and matplotlib are needed here only (the
``experiments`` extra).
"""
