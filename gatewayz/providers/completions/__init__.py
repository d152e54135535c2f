"""Legacy completions (POST /v1/completions) served by chat models: translation to and from chat completions."""
