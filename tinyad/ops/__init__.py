"""Tensor ops by family, each op's forward beside its backward.

* ``elementwise``: + - * / ** and the elementary functions, maximum, minimum, where
* ``reductions``: sum, mean, var, max
* ``shape``: reshape, permute, transpose, indexing, concatenate, stack
* ``linalg``: matrix multiplication

``tinyad.Tensor``'s operators and methods call these functions; the public
functions (``tinyad.where``, ``tinyad.stack``, ...) are these functions.
"""
