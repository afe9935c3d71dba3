"""Recovery: what was lost gets found. Relaunch for a runner that ended involuntarily, re-run a job
a spot reclaim killed, move DLQ messages back, launch for queued jobs no runner will take
(reconciliation), and the housekeeper's sweep that runs all of it on a schedule."""
