"""Run-store overhead: a 10,000-task flow with the store off, with thread writes and with
the helper-process writer (CPU µs per task run and ratios). See nb2flow/store/bench.py."""

from nb2flow.store.bench import main

if __name__ == "__main__":
    main()
