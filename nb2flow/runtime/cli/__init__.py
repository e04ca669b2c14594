"""The command line of a flow script (``run_cli``): :mod:`.parser` builds the options from
the flow's signature, :mod:`.run` runs the flow and turns its end into an exit status."""
