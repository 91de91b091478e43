"""The bot end to end: signed HTTP into its real web server (or Socket Mode), real Redis, real
git remotes, real deploy commands and workers, the Slack stand-in; also the shell."""
