"""Hypothesis state machines: the release and emergency rules against the real store, under
whatever sequence of clicks and outcomes hypothesis finds."""
