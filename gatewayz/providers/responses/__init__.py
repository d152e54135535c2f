"""OpenAI Responses API compatibility (stateless): requests to and answers from OpenAI chat completions."""
