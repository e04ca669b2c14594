"""A stand-in for a library that logs (as mlflow does): its logger gets its own stream handler
when the module is imported, which is what makes its records show in a notebook."""

from __future__ import annotations

import logging

LOG = logging.getLogger("nb2flow_tests.lib")
if not LOG.handlers:
    LOG.addHandler(logging.StreamHandler())
    LOG.setLevel(logging.INFO)
    LOG.propagate = False


def train(i: int) -> int:
    LOG.info("lib record %d", i)
    return i
