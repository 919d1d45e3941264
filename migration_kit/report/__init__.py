"""What a person reads: the replay report, the HTML page, the terminal, progress."""
