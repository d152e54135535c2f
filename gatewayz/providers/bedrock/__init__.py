"""AWS Bedrock Runtime: the Converse wire (translation both ways, SigV4 signing, the binary event stream)."""
