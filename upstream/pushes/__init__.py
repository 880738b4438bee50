"""Pushes: the push kinds' registry, single and bulk pushes, frozen selections, claims,
approvals, job bookkeeping and the runner."""
