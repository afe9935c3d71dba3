"""Provisioning: a job gets a runner. Launch instances for `launch` messages (the security
boundary first), start the runner on each (`start`), and keep the books by job: which runner owes
which job, where a need goes when a runner takes another job, and which runners a job that needs
none may stop (`taken`, `release`)."""
