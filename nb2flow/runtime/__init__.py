"""The executor: flows, tasks, futures, states, task runners, run events."""
