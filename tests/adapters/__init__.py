"""The adapters against the real things they wrap: Redis (store, locks, audit stream), the
notifier, the Slack stand-in that slack_sdk's clients talk to."""
