"""The Dask task runner, cut along its concerns: :mod:`.runner` (the runner the engine talks
to), :mod:`.connection` (client, cluster, event topic), :mod:`.batching` (gathering calls
into graph updates), :mod:`.planning` (an upstream's whole value, one item or its state),
:mod:`.shipping` (making the task's module importable on workers), :mod:`.worker` (what runs
on the workers) and :mod:`.remote` (values left on the cluster)."""
