"""The daemon: one process owning the consumer, the instances and the commits.

:mod:`supervisor.daemon.supervisor` is the loop; every other module is one part it
composes (data path, commits, group membership, instances, reloads, health, ops)."""
