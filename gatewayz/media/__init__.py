"""Non-chat operations: embeddings, image generation, transcription and speech, billed per their units."""
