"""Task result caching: :mod:`.keys` (what a call is keyed on), :mod:`.hashing` (fingerprints
of values and code), :mod:`.entries` (lookup, save, listing, clearing) and :mod:`.values`
(one value written to a directory and read back)."""
