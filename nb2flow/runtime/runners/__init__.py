"""Task runners: where submitted task runs execute (:mod:`.base` is the contract,
:mod:`.registry` turns a name into a runner)."""
