"""Comparing the two paths: outcomes, the comparator (ordered rules over one alignment), learned noise."""
