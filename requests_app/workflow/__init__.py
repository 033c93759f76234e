"""Carrying out a request's grant and revoke: the engine's steps, run by the workers.

- ``scheduling``: the services create a phase's step rows (from the step
  table, ``provisioning.steps.table``) inside their transaction and ask a
  worker to run them once it commits.
- ``tasks``: the Celery tasks, thin wrappers taking ids (their names never
  change, so queued messages survive a deploy).
- ``runner``: claims the steps whose dependencies succeeded, runs the
  independent ones side by side, records each step and its audit event.
- ``leases``: a running step's claim, renewed by a heartbeat and checked
  before every AWS write.
- ``locks``: the row lock that serialises the read-merge-write of a policy
  shared by several grants.
- ``sweeper``: finds lost work (a dead worker, an unreachable broker) and
  queues it again; starts the revoke of expired grants.
"""
