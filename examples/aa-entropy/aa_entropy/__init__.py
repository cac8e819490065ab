"""An example Adapt Anything plugin, written against ``aa_core.api`` alone.

* ``entropy`` (``aa.uda``): a UDA algorithm, source cross-entropy plus target entropy minimisation;
* hooks (``aa.plugins``): each stage's seconds appended to ``timings.csv`` in the run folder, and
  an ``aa timings RUN`` command that prints them.
"""
