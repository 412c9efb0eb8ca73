"""The toolbox: measurements run by hand when a question comes up, each on the
benchmark's own stack (see docs/profiling.md for what each has answered):

- :mod:`.profile`: where a decision's CPU goes (py-spy on a replica worker, JFR on members);
- :mod:`.paired`: two checkouts side by side, their loads alternating (A/B);
- :mod:`.memory`: bytes per active window in the members;
- :mod:`.create`: what the registry's write-through store costs ``POST /bucket``;
- :mod:`.cpu`: the CPU meter (``/proc``) the others and the end-to-end tool read.
"""
