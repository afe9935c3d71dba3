"""`jitrunners`: the operator's command-line tool (setup, status, tracing, control).

Not part of the Lambda package: it runs on an operator's machine (or against the local stack) and
reuses the Lambdas' domain code (`jitrunners`) where the two meet.
"""
