"""Lifecycle decisions: what to do with a delivery, a job message, an event or a sweep."""
