"""The engine: how a flow run drives its task runs (:mod:`.flow_run`) and how one task run's
attempts run wherever a runner puts them (:mod:`.attempts`), with what travels between the
two (:mod:`.payload`, :mod:`.futures`, :mod:`.transport`, :mod:`.tracebacks`).
"""
