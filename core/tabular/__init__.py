"""Tables: synthetic rows from a table of columns (the ctgan family, core/families/ctgan.py).

- `columns.py`: a table in memory (`Table`: column name → array), each column's type inferred (continuous, discrete
  integer, categorical, boolean, datetime; missing values as their own state) with overrides, and summary statistics.
- `transformer.py`: the reversible encoding of Xu et al. 2019: mode-specific normalization of numeric columns, one-hot
  categories, missing states; its fitted state is plain JSON, kept in every checkpoint.
- `io.py`: CSV in and out, and the built-in tables (scikit-learn's breast-cancer and wine, and
  `mixed` and `credit`, made from a seed).
- `metrics.py`: SDMetrics' column shapes and column pair trends, their mean as the quality score, and the privacy
  ratio of distances to the closest training record; `TableEvaluator` reports them during training.
"""
