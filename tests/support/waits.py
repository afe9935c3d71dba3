"""The bound of the end-to-end tests' waits: a guard against a hung test, never a speed check."""

from __future__ import annotations

# A wait returns as soon as its condition holds, so a generous bound costs a passing test
# nothing. What it waits for takes seconds on an idle machine; a busy laptop or shared CI runner
# has been seen ten times slower from one minute to the next, and no test may fail for that.
PATIENCE_S = 600.0
