"""kanald: the long-running kanal daemon."""
