"""The configuration models, by domain; gatewayz.settings assembles them and is the only reader of the
environment."""
