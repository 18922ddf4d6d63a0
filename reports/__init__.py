"""What a run produced, for people: ML Metadata readers, TFMA figures, tables, plots and pages.

Depends only on modules/; the components, the command line and the benchmarks render through it.
"""
