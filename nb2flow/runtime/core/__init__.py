"""The run vocabulary every layer and every observer speaks: state names, run events, the
run model, the run context, ids, the runtime's exceptions and ``UNSET``.

Nothing here imports the rest of the runtime: the store and the Jupyter panel know a run
through this package only.
"""
