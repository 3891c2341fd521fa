"""Session host: live call sessions over the Realtime control socket, admin API, dashboard."""
