"""releasebot: the release logic and its I/O, knowing nothing of Slack's request handling."""
