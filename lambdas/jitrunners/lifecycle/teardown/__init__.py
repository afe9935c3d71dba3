"""Teardown: a runner's end. The EventBridge events that say a runner ended (its command finished,
its instance stopped or was reclaimed) end its instance and clean up, and hand an involuntary end to
recovery."""
