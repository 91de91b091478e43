"""Pure rules on their own: domain, commands, blocks, config and the shared request builders.
No Redis, no network, no processes: these run in a blink and fail for one reason."""
