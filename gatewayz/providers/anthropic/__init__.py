"""Anthropic Messages API compatibility: translation to and from OpenAI chat completions (see `translate`)."""
