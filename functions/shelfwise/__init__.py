"""shelfwise: a serverless retail inventory API with a chat assistant that can see the stock."""

__version__ = "0.1.0"
