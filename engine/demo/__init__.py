"""`campaign demo`: a realistic synthetic loyalty program, imported and summarised end to end.

``generator`` writes the data set (also used by the benchmarks); ``run`` holds the ordered demo
steps and ``run_demo``.
"""
