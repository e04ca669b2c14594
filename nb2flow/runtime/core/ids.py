"""Readable run names (``brave-okapi``), as Prefect gives its flow runs, and run ids."""

from __future__ import annotations

import itertools
import os

ADJECTIVES = (
    "agile amber ancient autumn bold brave bright brisk calm candid careful cheerful clever "
    "cosmic crimson curious daring dazzling eager earnest electric elegant fearless fiery "
    "gentle giant glowing golden graceful grumpy hardy helpful hidden honest humble icy "
    "jolly keen kind lively loyal lucky mellow merry mighty misty modest nimble noble "
    "patient peaceful plucky polite proud quick quiet radiant rapid rustic sandy scarlet "
    "serene sharp shiny silent silver sleek smart snowy solid spicy spry steady stormy "
    "sturdy sunny swift tactful tidy tranquil trusty upbeat valiant vivid warm wise witty "
    "zealous zesty"
).split()

ANIMALS = (
    "albatross alpaca antelope badger beaver bison bobcat buffalo camel caracal cheetah "
    "chipmunk cobra condor cougar coyote crane dingo dolphin donkey eagle echidna egret "
    "falcon ferret finch flamingo fox gazelle gecko gibbon giraffe gopher heron hippo "
    "hornet husky ibis iguana impala jackal jaguar kestrel kingfisher koala lemur leopard "
    "llama lynx macaw magpie manatee marmot meerkat mink moose narwhal newt ocelot okapi "
    "oriole osprey otter owl panda panther pelican penguin puffin quail quokka raccoon "
    "raven reindeer salamander seal shrew sparrow squid stork swan tapir tiger toucan "
    "turtle viper walrus weasel whale wolf wombat yak zebra"
).split()


def _pick(words: list[str]) -> str:
    # os.urandom rather than the random module: nothing to import, nothing a seed can repeat
    return words[int.from_bytes(os.urandom(4), "big") % len(words)]


def run_name() -> str:
    """A random ``adjective-animal`` name (about 9,000 combinations; the id is the key)."""
    return f"{_pick(ADJECTIVES)}-{_pick(ANIMALS)}"


def flow_run_id() -> str:
    """A globally unique flow run id (32 random hex digits, as a uuid4 without dashes)."""
    return os.urandom(16).hex()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count(1)


_prefix = ""
_counter = itertools.count(1)
_reseed()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reseed)


def task_run_id() -> str:
    """A task run id: 64 random bits drawn once per process, then a counter (unique
    without a random draw per task: the hot path pays a counter step)."""
    return f"{_prefix}{next(_counter):x}"
