"""The chat assistant: conversations, memory, prompts, tools and the model client."""
