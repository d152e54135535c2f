"""Google Gemini (AI Studio) and Vertex AI: the native generateContent wire, translated to and from OpenAI chat."""
